"""bench/media_jobs.py's rounds: each round's headline figures and their median."""

from __future__ import annotations

from typing import Any

from bench.common import medians
from bench.media_jobs import HEADLINE, Sizes, headline, targets


def round_output(jobs_per_s: float, rss: float | None) -> dict[str, Any]:
    return {
        "bare": {"workflows_per_s": 20.0},
        "jobs": {"jobs_per_s": jobs_per_s, "ratio_to_bare": jobs_per_s / 20.0,
                 "webhook_latency_ms": {"p50": 90, "p99": 150,
                                        "ratio_p99_to_bare_half_load": 0.2},
                 "cpu_ms_per_job": {"worker": 150, "temporal": 110},
                 "poll_only": {"max_ms": 2500}},
        "inflight": {"worker_rss_mb": rss},
    }  # fmt: skip


def test_the_median_of_three_rounds_and_targets_on_it() -> None:
    rounds = [headline(round_output(s, rss)) for s, rss in ((4.0, 290), (12.0, None), (14.0, 180))]
    assert set(rounds[0]) == set(HEADLINE)
    median = medians(rounds)
    assert median["jobs_per_s"] == 12.0
    assert median["inflight_worker_rss_mb"] == 235.0  # the round without the figure is left out
    checked = targets(median, Sizes())
    assert checked["jobs_per_s_ratio_to_bare"]["met"] is True  # 12 / 20 = 0.60
    assert checked["inflight_worker_rss_mb"]["met"] is False


def test_a_round_that_broke_early_has_no_figures_not_zeros() -> None:
    figures = headline({"bare": {"workflows_per_s": 18.0}})
    assert figures["bare_workflows_per_s"] == 18.0 and figures["jobs_per_s"] is None
