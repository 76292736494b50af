"""Recorded histories must replay on the current workflow code (determinism guard).

`histories/` holds the first recordings (top level) and one folder per release, recorded from
that release's code by `python -m tests.workflows.record_histories --out histories/<release>`.
Every file of every folder replays, with and without the tracing interceptor: a workflow
change that would break a run started by an older worker fails here, and goes behind
`workflow.patched(...)` instead.
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
from workflows.maintenance import PruneEventsWorkflow
from workflows.media_job import MediaJobWorkflow
from workflows.recovery import RecoveryWorkflow
from workflows.sync_run import SyncRunWorkflow

ROOT = Path(__file__).parent / "histories"
HISTORIES = sorted(ROOT.rglob("*.json"))
HISTORY_TEXT = {path: path.read_text() for path in HISTORIES}
RELEASES = sorted(p for p in ROOT.iterdir() if p.is_dir())
WORKFLOWS = [
    MediaJobWorkflow, SyncRunWorkflow, RecoveryWorkflow, PruneEventsWorkflow, AdmissionWorkflow,
]  # fmt: skip


def workflow_type(text: str) -> str:
    first = json.loads(text)["events"][0]
    name: str = first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"]
    return name


def test_every_release_folder_covers_every_workflow() -> None:
    """The newest folder covers every workflow; each folder covers what the one before it did
    (a workflow added since an older release can't be in that release's folder)."""
    assert RELEASES, "no release folder of recorded histories"
    wanted = {w.__temporal_workflow_definition.name for w in WORKFLOWS}  # type: ignore[attr-defined]
    before: set[str] = set()
    for release in RELEASES:
        found = {workflow_type(HISTORY_TEXT[p]) for p in HISTORIES if p.parent == release}
        assert found >= before, f"{release.name} lacks {before - found}"
        before = found
    assert before >= wanted, f"{RELEASES[-1].name} lacks {wanted - before}"


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
