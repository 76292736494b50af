"""The whole stack around orchestrator faults: a worker stopped (SIGTERM) while an activity runs
lets it finish (graceful shutdown) instead of cancelling it into a second attempt, and a
queued job whose workflow was never started can be cancelled."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.api.enums.v1 import EventType

from core.contracts import JobStatus, media_job_workflow_id
from core.db import make_engine, make_sessionmaker
from core.models import Job
from tests.e2e.conftest import E2E, LOCAL_ONLY
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e


async def store_attempts(e2e: E2E, job_id: str) -> list[int]:
    """The attempt number of each start of the job's `media.store_outputs` activity."""
    handle = e2e.temporal.get_workflow_handle(media_job_workflow_id(job_id))
    scheduled: set[int] = set()
    attempts: list[int] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            if attributes.activity_type.name == "media.store_outputs":
                scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if started.scheduled_event_id in scheduled:
                attempts.append(started.attempt)
    return attempts


@LOCAL_ONLY
async def test_sigterm_lets_a_running_copy_finish_in_one_attempt(e2e: E2E) -> None:
    faults = {"file_delay_seconds": 4, "file_bytes": 200_000}
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "a slow fox", "_emulator": faults})
        await wait_job(api, job["id"], {"storing"}, within=30)
        await asyncio.sleep(1.0)  # into the four-second download
        await asyncio.to_thread(e2e.stack.stop_worker)  # SIGTERM, then the drain
        assert e2e.stack.worker is not None
        log = e2e.stack.worker.log_tail(1_000_000)
        assert "shutting down: finishing running activities" in log
        try:
            # The copy finished while the worker drained: the job is succeeded with no worker.
            done = await wait_job(api, job["id"], within=30)
        finally:
            await asyncio.to_thread(e2e.stack.start_worker)
        assert done["status"] == "succeeded", done
        assert done["outputs"] and done["outputs"][0]["bytes"] >= 200_000
    # One start of the copy, attempt 1: it was not cancelled into a retry.
    assert await store_attempts(e2e, job["id"]) == [1]


async def test_a_queued_job_without_a_workflow_is_canceled(e2e: E2E) -> None:
    """Its start was lost (Temporal was down): a cancel answers with the job canceled in our
    records rather than a 503 that never goes away."""
    job_id = uuid.uuid4().hex
    engine = make_engine(e2e.stack.database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session, session.begin():
            session.add(
                Job(
                    id=job_id, user_id="alice", kind="generation", provider="replicate",
                    model="black-forest-labs/flux-schnell", input={"prompt": "a fox"},
                    status=JobStatus.QUEUED.value,
                )
            )  # fmt: skip
    finally:
        await engine.dispose()
    async with e2e.api() as api:
        response = await api.post(f"/v1/jobs/{job_id}/cancel", json={"reason": "changed my mind"})
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "canceled"
        again = (await api.get(f"/v1/jobs/{job_id}")).json()
        assert again["status"] == "canceled" and again["error"] == "changed my mind"
        second = await api.post(f"/v1/jobs/{job_id}/cancel")
        assert second.status_code == 409, second.text
