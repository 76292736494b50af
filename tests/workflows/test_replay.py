"""Recorded histories must replay on the current workflow code (determinism guard)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.media_job import MediaJobWorkflow
from workflows.sync_run import SyncRunWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
HISTORY_TEXT = {path: path.read_text() for path in HISTORIES}


def test_histories_are_recorded() -> None:
    assert len(HISTORIES) >= 4


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, HISTORY_TEXT[path])
    await Replayer(workflows=[MediaJobWorkflow, SyncRunWorkflow]).replay_workflow(history)
