"""WORKER_QUEUES: one worker process polls every task queue, or the chosen ones only."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import FixedSizeSlotSupplier, ResourceBasedSlotSupplier

from core.alerts.contracts import ALERT_DELIVER, ALERT_EVALUATE
from core.batch_contracts import ACT_BATCH_CHUNK, ACT_BATCH_FINISH
from core.contracts import (
    ADMISSION_ENDED,
    ADMISSION_RELEASE,
    ADMISSION_REQUEST,
    EVENTS_PRUNE,
    MEDIA_CANCEL,
    MEDIA_POLL,
    MEDIA_RECORD,
    MEDIA_STORE_OUTPUTS,
    MEDIA_SUBMIT,
    PROVIDER_POLL_SWEEP,
    SYNC_FETCH_PAGES,
    SYNC_OPEN_RUN,
    SYNC_RECORD,
    SYNC_UPDATED_SINCE,
)
from core.pull_contracts import ACT_BATCH, ACT_CLEANUP, ACT_FINISH, ACT_PLAN
from core.recovery import RECOVERY_SWEEP
from core.retention.contracts import RETENTION_BATCH
from core.settings import Settings
from providers import registry
from worker import build_workers, media_tuner

HISTORIES = Path(__file__).parent / "workflows" / "histories"


def settings(tmp_path: Path, **values: Any) -> Settings:
    # Queues of their own: a worker registers with the (session's) client as it is made.
    tag = uuid.uuid4().hex[:8]
    queues = {
        f"{q}_task_queue": f"{q}-{tag}"
        for q in ("media", "poller", "storage", "sync", "erp", "pull_sync")
    }
    queues["provider_task_queue_prefix"] = f"provider-calls-{tag}-"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        secret_key="test-secret-key-0123456789",
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        storage_dir=str(tmp_path / "storage"),
        **{**queues, **values},
    )


def test_worker_queues_come_from_a_comma_separated_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKER_QUEUES", " media, storage ")
    assert settings(tmp_path).worker_queues == ["media", "storage"]
    monkeypatch.setenv("WORKER_QUEUES", "")
    assert settings(tmp_path).worker_queues == []


def test_an_unknown_queue_name_is_refused_with_the_choices(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKER_QUEUES", "media,copies")
    with pytest.raises(ValidationError, match="unknown copies; choose from media, storage"):
        settings(tmp_path)


async def test_a_worker_polls_every_queue_by_default(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    every = settings(tmp_path)
    async with build_workers(every, env.client) as workers:
        # The media queue brings the pollers' queue and one queue per provider's calls.
        assert [w.task_queue for w in workers] == [
            every.media_task_queue, every.poller_task_queue,
            *[every.provider_task_queue(p) for p in sorted(registry.specs())],
            every.storage_task_queue, every.sync_task_queue, every.erp_task_queue,
            every.pull_sync_task_queue,
        ]  # fmt: skip


async def test_a_worker_polls_only_the_chosen_queues(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    chosen = settings(
        tmp_path, worker_queues=["erp", "storage"], storage_task_queue="copies",
        erp_task_queue="pages",
    )  # fmt: skip
    async with build_workers(chosen, env.client) as workers:
        assert [w.task_queue for w in workers] == ["copies", "pages"]


async def test_the_media_workers_workflow_task_slots_come_from_the_settings(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    chosen = settings(
        tmp_path, worker_queues=["media"], worker_max_concurrent_workflow_tasks=6,
        worker_min_workflow_tasks=3,
    )  # fmt: skip
    async with build_workers(chosen, env.client) as workers:
        media = next(w for w in workers if w.task_queue == chosen.media_task_queue)
        tuner = media.config()["tuner"]
        assert tuner is not None
        supplier = tuner._get_workflow_task_slot_supplier()
        # More than the minimum only while the CPU has room: a flood's tasks stay at the
        # server, where the fairness keys order them, instead of queueing in this process.
        assert isinstance(supplier, ResourceBasedSlotSupplier)
        assert (supplier.slot_config.minimum_slots, supplier.slot_config.maximum_slots) == (3, 6)
        assert supplier.tuner_config.target_cpu_usage == 0.8
        assert tuner._get_activity_task_slot_supplier() == FixedSizeSlotSupplier(200)


def test_a_cpu_target_of_zero_keeps_the_workflow_task_slots_fixed(tmp_path: Path) -> None:
    chosen = settings(
        tmp_path, worker_max_concurrent_workflow_tasks=6, worker_workflow_tasks_target_cpu=0
    )
    supplier = media_tuner(chosen)._get_workflow_task_slot_supplier()
    assert supplier == FixedSizeSlotSupplier(6)


def recorded_activity_names() -> set[str]:
    """Every activity type the recorded histories scheduled, local activities included."""
    names: set[str] = set()
    for path in HISTORIES.rglob("*.json"):
        for event in json.loads(path.read_text())["events"]:
            if scheduled := event.get("activityTaskScheduledEventAttributes"):
                names.add(scheduled["activityType"]["name"])
            if marker := event.get("markerRecordedEventAttributes"):
                for payload in marker["details"].get("data", {}).get("payloads", []):
                    names.add(json.loads(base64.b64decode(payload["data"]))["activity_type"])
    return names


async def test_the_worker_registers_every_activity_name_workflows_call(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # Workflows call activities by these names (core/*contracts.py, core/recovery.py) and
    # recorded histories name them too: a renamed activity would leave both unanswered.
    called = {
        MEDIA_SUBMIT, MEDIA_POLL, MEDIA_CANCEL, MEDIA_RECORD, MEDIA_STORE_OUTPUTS,
        SYNC_FETCH_PAGES, SYNC_OPEN_RUN, SYNC_UPDATED_SINCE, SYNC_RECORD, EVENTS_PRUNE,
        RECOVERY_SWEEP, ACT_PLAN, ACT_BATCH, ACT_FINISH, ACT_CLEANUP, PROVIDER_POLL_SWEEP,
        RETENTION_BATCH, ALERT_EVALUATE, ALERT_DELIVER,
        ACT_BATCH_CHUNK, ACT_BATCH_FINISH,
        ADMISSION_REQUEST, ADMISSION_RELEASE, ADMISSION_ENDED,
    }  # fmt: skip
    recorded = recorded_activity_names()
    assert {"media.submit", "media.record", "sync.fetch_page", "recovery.sweep"} <= recorded
    async with build_workers(settings(tmp_path), env.client) as workers:
        registered = {
            getattr(fn, "__temporal_activity_definition").name
            for worker in workers
            for fn in worker.config().get("activities", [])
        }
    assert registered == called
    assert recorded <= registered
