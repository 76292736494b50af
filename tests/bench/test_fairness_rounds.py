"""bench/fairness.py's rounds: each round's headline and the target on their median."""

from __future__ import annotations

from typing import Any

from bench.fairness import summarize


def round_output(quiet_p99: float | None, flood_p99: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": {"cpu_count": 2}, "config": {"users": 10}}
    if quiet_p99 is not None and flood_p99 is not None:
        out["quiet"] = {"time_to_provider_ms": {"p50": 40.0, "p99": quiet_p99}}
        out["flood"] = {"time_to_provider_ms": {"p50": 45.0, "p99": flood_p99}}
        out["ratio_p99"] = round(flood_p99 / quiet_p99, 2)
    return out


def test_the_target_holds_on_the_median_of_the_rounds() -> None:
    out = summarize([round_output(80, 96), round_output(70, 140), round_output(90, 126)])
    assert [r["ratio_p99"] for r in out["rounds"]] == [1.2, 2.0, 1.4]
    assert out["median"]["ratio_p99"] == 1.4 and out["median"]["flood_p99_ms"] == 126
    assert out["targets"]["ratio_p99_median"]["met"] is True
    assert len(out["round_details"]) == 3


def test_a_round_that_broke_is_left_out_of_the_median() -> None:
    out = summarize([round_output(80, 160), round_output(None, None), round_output(80, 200)])
    assert out["rounds"][1]["ratio_p99"] is None
    assert out["median"]["ratio_p99"] == 2.25
    assert out["targets"]["ratio_p99_median"]["met"] is False
