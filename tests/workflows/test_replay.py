"""Recorded histories must replay on the current workflow code (determinism guard).

`histories/` holds the first recordings (top level) and one folder per release, recorded from
that release's code by `python -m tests.workflows.record_histories --out histories/<release>`.
Every file of every folder replays, with and without the tracing interceptor: a workflow
change that would break a run started by an older worker fails here, and goes behind
`workflow.patched(...)` instead. The newest release folder covers every workflow in WORKFLOWS;
older ones hold what existed when they were recorded and are never re-recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import WorkflowHistory
from temporalio.worker import Interceptor, Replayer

from core.tracing import setup_tracing, shutdown_tracing, temporal_interceptors
from workflows.admission import AdmissionWorkflow
from workflows.alerts import AlertDeliveryWorkflow, AlertSweepWorkflow
from workflows.bulk_jobs import JobBatchWorkflow
from workflows.maintenance import PruneEventsWorkflow
from workflows.media_job import MediaJobWorkflow
from workflows.provider_poller import ProviderPollerWorkflow
from workflows.pull_sync import PullSyncCleanupWorkflow, PullSyncCycleWorkflow
from workflows.recovery import RecoveryWorkflow
from workflows.retention import RetentionWorkflow
from workflows.sync_run import SyncRunWorkflow

ROOT = Path(__file__).parent / "histories"
HISTORIES = sorted(ROOT.rglob("*.json"))
HISTORY_TEXT = {path: path.read_text() for path in HISTORIES}
WORKFLOWS = [
    MediaJobWorkflow,
    SyncRunWorkflow,
    RecoveryWorkflow,
    PruneEventsWorkflow,
    ProviderPollerWorkflow,
    PullSyncCycleWorkflow,
    PullSyncCleanupWorkflow,
    AlertSweepWorkflow,
    AlertDeliveryWorkflow,
    RetentionWorkflow,
    JobBatchWorkflow,
    AdmissionWorkflow,
]


def release_order(folder: Path) -> tuple[tuple[int, ...], str]:
    """`v0.10.0-<sha>` after `v0.9.0-<sha>`: the version's numbers, not the folder name's text."""
    version = folder.name.removeprefix("v").split("-", 1)[0]
    return tuple(int(n) for n in version.split(".") if n.isdigit()), folder.name


RELEASES = sorted((p for p in ROOT.iterdir() if p.is_dir()), key=release_order)


def workflow_type(text: str) -> str:
    first = json.loads(text)["events"][0]
    name: str = first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
    return name


def recorded_types(release: Path) -> set[str]:
    return {workflow_type(HISTORY_TEXT[p]) for p in HISTORIES if p.parent == release}


def test_the_newest_release_folder_covers_every_workflow() -> None:
    assert RELEASES, "no release folder of recorded histories"
    wanted = {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]
    newest = RELEASES[-1]
    found = recorded_types(newest)
    assert found >= wanted, (
        f"{newest.name} lacks {sorted(wanted - found)}: record a new release folder "
        "(python -m tests.workflows.record_histories) with a scenario for each"
    )
    # Older folders keep what they were recorded with: each type in WORKFLOWS still.
    for release in RELEASES:
        assert recorded_types(release) <= wanted, f"{release.name}: not in WORKFLOWS"


@pytest.fixture(params=["plain", "traced"])
def interceptors(request: pytest.FixtureRequest) -> Iterator[list[Interceptor]]:
    if request.param == "plain":
        yield []
        return
    setup_tracing("replay", exporter=InMemorySpanExporter())
    try:
        yield list(temporal_interceptors())
    finally:
        shutdown_tracing()


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: str(p.relative_to(ROOT)))
async def test_history_replays(path: Path, interceptors: list[Interceptor]) -> None:
    history = WorkflowHistory.from_json(path.stem, HISTORY_TEXT[path])
    await Replayer(workflows=WORKFLOWS, interceptors=interceptors).replay_workflow(history)
