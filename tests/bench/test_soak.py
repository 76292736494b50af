"""The soak's own logic, without a stack: which faults it plays, and when."""

from __future__ import annotations

import argparse
import random

import pytest

from bench.soak import (
    PROVIDERS,
    STACK_FAULTS,
    FaultDriver,
    Plan,
    Soak,
    Tally,
    job_faults,
    job_input_for,
    was_cancelled,
)


def plan(quick: bool, seed: int = 1, minutes: float = 20.0) -> Plan:
    args = argparse.Namespace(
        quick=quick, seed=seed, minutes=minutes, jobs_per_minute=60.0, quiescence=None
    )
    return Plan.of(args)


def driver(p: Plan) -> FaultDriver:
    # The schedule needs no stack: the soak object is only used when a fault is played.
    return FaultDriver(Soak.__new__(Soak), p, Tally(), random.Random(p.seed))


@pytest.mark.parametrize("seed", range(5))
def test_quick_plays_every_stack_fault_once_inside_the_window(seed: int) -> None:
    window = 80.0
    schedule = driver(plan(quick=True, seed=seed)).schedule(window)
    assert sorted(kind for _, kind in schedule) == sorted(STACK_FAULTS)
    assert all(0 <= at <= window - 20 for at, _ in schedule)
    # The ones that take longest to recover from come first.
    assert {kind for _, kind in sorted(schedule)[:3]} == {
        "temporal_restart", "db_outage", "worker_sigterm",
    }  # fmt: skip


@pytest.mark.parametrize("window", [60.0, 900.0])
def test_full_plays_every_stack_fault_at_least_once_and_none_at_the_end(window: float) -> None:
    schedule = driver(plan(quick=False)).schedule(window)
    assert set(STACK_FAULTS) <= {kind for _, kind in schedule}
    assert all(0 <= at <= max(window - 40.0, 0.0) for at, _ in schedule)
    assert schedule == sorted(schedule)


def test_the_same_seed_plays_the_same_faults() -> None:
    first = driver(plan(quick=False, seed=7)).schedule(900.0)
    again = driver(plan(quick=False, seed=7)).schedule(900.0)
    assert first == again
    assert first != driver(plan(quick=False, seed=8)).schedule(900.0)


def test_every_job_fault_has_switches_for_a_provider_that_takes_them() -> None:
    faults, skipped = job_faults(plan(quick=True))
    assert not set(faults) & set(skipped)
    for kind, by_provider in faults.items():
        assert by_provider, kind
        assert set(by_provider) <= set(PROVIDERS), kind


def test_inputs_carry_their_reference() -> None:
    for provider in PROVIDERS:
        kinds = ["generation", "edit", "upscale", "video"] + (
            ["training"] if provider != "kie" else []
        )
        for kind in kinds:
            assert "soak-000042" in str(job_input_for(provider, kind, "ann", "soak-000042"))


def test_a_cancel_counts_by_flag_or_by_status() -> None:
    assert was_cancelled({"id": "a", "status": "COMPLETED", "canceled": True})
    assert was_cancelled({"id": "a", "status": "canceled"})
    assert not was_cancelled({"id": "a", "status": "succeeded", "canceled": False})
