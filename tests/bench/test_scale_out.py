"""The scale-out bench's own figures, without a stack: shares, saturation, provider jobs."""

from __future__ import annotations

from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import (
    ActivityTaskStartedEventAttributes,
    HistoryEvent,
    WorkflowTaskCompletedEventAttributes,
)

from bench.scale_out import (
    provider_job_check,
    saturation,
    shares,
    tally_identities,
    worker_name,
)


def completed(identity: str) -> HistoryEvent:
    return HistoryEvent(
        event_type=EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        workflow_task_completed_event_attributes=WorkflowTaskCompletedEventAttributes(
            identity=identity
        ),
    )


def started(identity: str) -> HistoryEvent:
    return HistoryEvent(
        event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED,
        activity_task_started_event_attributes=ActivityTaskStartedEventAttributes(
            identity=identity
        ),
    )


NAMES = {"101": "worker-1", "202": "worker-2"}


def test_identities_are_named_after_the_worker_process_and_unknown_ones_kept() -> None:
    assert worker_name("101@host", NAMES) == "worker-1"
    assert worker_name("999@elsewhere", NAMES) == "999@elsewhere"


def test_workflow_and_activity_tasks_are_counted_per_worker() -> None:
    histories = [
        [completed("101@h"), started("202@h"), completed("202@h")],
        [completed("101@h"), HistoryEvent(event_type=EventType.EVENT_TYPE_TIMER_FIRED)],
    ]
    counts = tally_identities(histories, NAMES)
    assert counts["workflow_tasks"] == Counter({"worker-1": 2, "worker-2": 1})
    assert counts["activity_tasks"] == Counter({"worker-2": 1})


def test_shares_add_up_to_one_busiest_first() -> None:
    assert shares({"worker-1": 1, "worker-2": 3}) == {"worker-2": 0.75, "worker-1": 0.25}
    assert shares({}) == {}


def step(workers: int, jobs: float | None, rows: float | None) -> dict[str, object]:
    return {"workers": workers, "jobs_per_s": jobs, "rows_per_s": rows,
            "cpu_pct": {"temporal": 50.0}, "machine_busy_pct": 90.0}  # fmt: skip


def test_throughput_stops_rising_at_the_first_step_with_less_than_ten_percent_gain() -> None:
    figures = saturation([step(1, 2.0, 1000), step(2, 3.0, 1050), step(4, 3.1, 2000)])
    assert figures["stops_rising_at_workers"] == {"jobs_per_s": 4, "rows_per_s": 2}
    assert figures["gains"][0] == {
        "from_workers": 1, "to_workers": 2, "jobs_per_s": 1.5, "rows_per_s": 1.05,
    }  # fmt: skip
    assert figures["temporal_cpu_pct"] == {"1": 50.0, "2": 50.0, "4": 50.0}


def test_throughput_that_keeps_rising_has_no_saturation_point() -> None:
    figures = saturation([step(1, 2.0, None), step(2, 4.0, None)])
    assert figures["stops_rising_at_workers"] == {"jobs_per_s": None, "rows_per_s": None}


def item(provider_job_id: str, canceled: bool = False) -> dict[str, object]:
    return {"id": provider_job_id, "status": "succeeded", "canceled": canceled}


def test_one_live_provider_job_per_job_passes_and_cancelled_extras_are_counted_apart() -> None:
    listed = {"replicate": {"j1": [item("p0", canceled=True), item("p1")]}}
    check = provider_job_check([("j1", "replicate", "p1")], listed)
    assert check["not_exactly_one"] == [] and check["extra_cancelled"] == 1


def test_a_second_live_provider_job_fails_at_every_provider() -> None:
    listed = {
        "replicate": {"j1": [item("p0"), item("p1")]},
        "fal": {"j2": [item("f0"), item("f1")]},
        "kie": {},
    }
    jobs = [("j1", "replicate", "p1"), ("j2", "fal", "f1"), ("j3", "kie", "k1")]
    check = provider_job_check(jobs, listed)
    # j1 twice at Replicate, j2 twice at fal (a retried create makes nothing at any provider
    # now), j3 never at KIE
    assert len(check["not_exactly_one"]) == 3


def test_provider_jobs_for_jobs_we_do_not_have_are_counted() -> None:
    listed = {"kie": {"ghost": [item("k0"), item("k1", canceled=True)]}}
    assert provider_job_check([], listed)["for_jobs_we_do_not_have"] == 1
