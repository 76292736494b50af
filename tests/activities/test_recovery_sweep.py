"""The recovery sweep against a real Temporal dev server and a migrated SQLite DB: it starts or
fails queued jobs whose workflow never started, takes no action twice when sweeps overlap, and
never moves a status backwards. No worker polls the task queue: a started workflow just waits,
which is all these tests look at."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.recovery import RecoverySweeper
from core.contracts import SEARCH_ATTRIBUTES, JobStatus, media_job_workflow_id
from core.jobs.start import media_job_input, start_job_workflow
from core.jobs.store import advance_job
from core.models import Job, RecoveryAttempt, utcnow
from core.outbound import OutboundFetcher
from core.recovery import RecoveryItem
from core.settings import Settings
from devstack.processes import free_port, temporal_cli_path
from storage.local import LocalStorage

BASE = "http://api.test"


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[Client]:
    cli = temporal_cli_path()  # from the wheel: nothing is downloaded
    env = await WorkflowEnvironment.start_local(  # dev_server_existing_path: the wheel's CLI
        dev_server_existing_path=cli,
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
    )
    try:
        yield env.client
    finally:
        await env.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        secret_key="test-secret-key-0123456789",
        public_base_url=BASE,
        storage_dir=str(tmp_path / "storage"),
        recovery_min_age_minutes=0,  # the tightest case: a claimed job is at once eligible again
        media_task_queue="recovery-test",
    )


@pytest.fixture
async def fetcher(settings: Settings) -> AsyncIterator[OutboundFetcher]:
    fetcher = OutboundFetcher.from_settings(settings)
    try:
        yield fetcher
    finally:
        await fetcher.aclose()


def sweeper(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    fetcher: OutboundFetcher,
) -> RecoverySweeper:
    return RecoverySweeper(
        sessions=sessions, storage=LocalStorage(settings.storage_dir), providers={},
        temporal=temporal, fetcher=fetcher, settings=settings,
    )  # fmt: skip


async def add_job(sessions: async_sessionmaker[AsyncSession], **fields: Any) -> Job:
    """A job recorded a while ago (as the API records it before starting its workflow)."""
    then = utcnow() - timedelta(minutes=10)
    values: dict[str, Any] = {
        "id": f"j{utcnow().timestamp():.6f}".replace(".", ""),
        "user_id": "alice", "kind": "generation", "provider": "replicate",
        "model": "black-forest-labs/flux-schnell", "input": {"prompt": "a fox"},
        "status": JobStatus.QUEUED.value, "created_at": then, "updated_at": then,
    }  # fmt: skip
    values.update(fields)
    job = Job(**values)
    async with sessions() as session, session.begin():
        session.add(job)
    await asyncio.sleep(0.001)  # distinct ids
    return job


async def reload(sessions: async_sessionmaker[AsyncSession], job_id: str) -> Job:
    async with sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def attempts(sessions: async_sessionmaker[AsyncSession], job_id: str) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(RecoveryAttempt.result).where(RecoveryAttempt.job_id == job_id)
        )
        return list(rows.all())


async def runs_of(temporal: Client, job_id: str) -> int:
    """How many runs the job's workflow id has had (visibility catches up within moments)."""
    query = f'WorkflowId = "{media_job_workflow_id(job_id)}"'
    for _ in range(50):
        found = [w async for w in temporal.list_workflows(query)]
        if found:
            return len(found)
        await asyncio.sleep(0.1)
    return 0


async def test_a_queued_job_that_never_started_is_started_with_the_apis_input(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    fetcher: OutboundFetcher,
) -> None:
    job = await add_job(sessions)
    report = await sweeper(sessions, temporal, settings, fetcher).sweep(False)
    [item] = [i for i in report.items if i.job_id == job.id]
    assert (item.problem, item.action, item.result) == ("stranded", "start", "started")
    handle = temporal.get_workflow_handle(media_job_workflow_id(job.id))
    described = await handle.describe()
    assert described.status == WorkflowExecutionStatus.RUNNING
    # the input the API builds (core.jobs.start.media_job_input) for the same row
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [payload] = await temporal.data_converter.decode(started.input.payloads)
    expected = media_job_input(await reload(sessions, job.id), settings, job.input)
    assert payload["job_id"] == expected.job_id and payload["webhook_url"] == expected.webhook_url
    assert payload["input"] == expected.input
    assert await attempts(sessions, job.id) == ["started"]


async def test_a_queued_job_that_cannot_be_started_is_failed_with_the_reason(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    fetcher: OutboundFetcher,
) -> None:
    # it edits an output that no longer exists: the provider could never be given a link to it
    gone = await add_job(
        sessions, kind="edit", input={"prompt": "x", "image": f"{BASE}/v1/jobs/nope/outputs/0"}
    )
    report = await sweeper(sessions, temporal, settings, fetcher).sweep(False)
    [item] = [i for i in report.items if i.job_id == gone.id]
    assert (item.action, item.result) == ("start", "job_failed")
    failed = await reload(sessions, gone.id)
    assert failed.status == JobStatus.FAILED.value and "no output 0" in (failed.error or "")


async def test_a_queued_job_whose_workflow_ended_is_failed(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    fetcher: OutboundFetcher,
) -> None:
    job = await add_job(sessions)
    await start_job_workflow(temporal, settings, media_job_input(job, settings, job.input))
    await temporal.get_workflow_handle(media_job_workflow_id(job.id)).terminate("incident")
    report = await sweeper(sessions, temporal, settings, fetcher).sweep(False)
    [item] = [i for i in report.items if i.job_id == job.id]
    assert (item.action, item.result) == ("fail", "job_failed")
    assert "terminated" in item.detail
    assert (await reload(sessions, job.id)).status == JobStatus.FAILED.value


async def test_concurrent_sweeps_take_each_action_once(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    fetcher: OutboundFetcher,
) -> None:
    jobs = [await add_job(sessions) for _ in range(6)]
    sweepers = [sweeper(sessions, temporal, settings, fetcher) for _ in range(3)]
    reports = await asyncio.gather(*(s.sweep(False) for s in sweepers))
    for job in jobs:
        results = [i.result for r in reports for i in r.items if i.job_id == job.id]
        assert results.count("started") == 1, results
        assert set(results) <= {"started", "taken", "already_running"}, results
        assert await attempts(sessions, job.id) == ["started"]
        assert await runs_of(temporal, job.id) == 1
    # and a later sweep finds them running: nothing more to do
    again = await sweepers[0].sweep(False)
    assert not [i for i in again.items if i.job_id in {j.id for j in jobs}]


async def test_a_workflow_started_by_someone_else_is_not_an_error(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    fetcher: OutboundFetcher,
) -> None:
    job = await add_job(sessions)
    # the sweep read the job, then the user's retry (same Idempotency-Key) started it
    sweep = sweeper(sessions, temporal, settings, fetcher)
    await start_job_workflow(
        temporal, settings, media_job_input(job, settings, job.input), first=True
    )
    item = RecoveryItem(
        job_id=job.id, user_id=job.user_id, kind=job.kind, provider=job.provider,
        provider_job_id=None, status=job.status, problem="stranded", action="start",
    )  # fmt: skip
    done = await sweep._act(job, item, None)
    assert done.result == "already_running"
    assert await runs_of(temporal, job.id) == 1
    assert (await reload(sessions, job.id)).status == JobStatus.QUEUED.value


async def test_a_restore_never_moves_a_job_backwards(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    fetcher: OutboundFetcher,
) -> None:
    """A job that failed only because its outputs could not be stored: two sweeps restore it
    at once; one claims it; its status stays `failed` (never back to `queued`) until the
    restored copy records it succeeded."""
    job = await add_job(
        sessions, status=JobStatus.FAILED.value, provider_job_id="p-1",
        provider_status="succeeded", error="output 0 could not be stored",
    )  # fmt: skip
    item = RecoveryItem(
        job_id=job.id, user_id=job.user_id, kind=job.kind, provider=job.provider,
        provider_job_id="p-1", status=job.status, problem="store_failed", action="restore",
    )  # fmt: skip
    a, b = (sweeper(sessions, temporal, settings, fetcher) for _ in range(2))
    done = await asyncio.gather(a._act(job, item, None), b._act(job, item, None))
    assert sorted(d.result or "" for d in done) == ["started", "taken"]
    assert await attempts(sessions, job.id) == ["started"]
    assert await runs_of(temporal, job.id) == 1
    restoring = await reload(sessions, job.id)
    assert (restoring.status, restoring.recovery_state) == ("failed", "restoring")
    # the restore workflow's own writes on the way are refused: none moves it back
    async with sessions() as session, session.begin():
        for status in (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.STORING):
            assert not await advance_job(session, job.id, status)
    async with sessions() as session, session.begin():
        assert await advance_job(session, job.id, JobStatus.SUCCEEDED, error=None)
    restored = await reload(sessions, job.id)
    assert (restored.status, restored.recovery_state) == ("succeeded", "recovered")
    assert restored.recovery_reason == "store_failed" and restored.error is None
    # a failed job nobody restores stays failed
    other = await add_job(sessions, status=JobStatus.FAILED.value)
    async with sessions() as session, session.begin():
        assert not await advance_job(session, other.id, JobStatus.SUCCEEDED)
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(RecoveryAttempt))
    assert count == 1


async def test_a_job_created_while_temporal_was_down_is_started_by_the_sweep(
    tmp_path: Path, temporal: Client, fetcher: OutboundFetcher
) -> None:
    from api.main import create_app
    from tests.api.test_temporal_down import JOB, api, settings_for

    down = settings_for(tmp_path, f"127.0.0.1:{free_port()}")
    app = create_app(down)
    async with app.router.lifespan_context(app):
        async with api(app, **{"Idempotency-Key": "k"}) as alice:
            response = await alice.post("/v1/jobs", json=JOB)
        assert response.status_code == 503, response.text
        sessions = app.state.sessions
        async with sessions() as session:
            [job] = (await session.scalars(select(Job))).all()
        assert job.status == JobStatus.QUEUED.value
        up = down.model_copy(update={"recovery_min_age_minutes": 0})
        report = await sweeper(sessions, temporal, up, fetcher).sweep(False)
        [item] = [i for i in report.items if i.job_id == job.id]
        assert (item.action, item.result) == ("start", "started")
        described = await temporal.get_workflow_handle(media_job_workflow_id(job.id)).describe()
        assert described.status == WorkflowExecutionStatus.RUNNING


async def test_a_store_failure_is_found_by_the_recorded_phase_or_by_the_providers_own_status(
    sessions: async_sessionmaker[AsyncSession],
    temporal: Client,
    settings: Settings,
    fetcher: OutboundFetcher,
) -> None:
    """A failed job whose provider succeeded is a suspect: by `provider_phase`, or on rows
    from before it, by what the job's own provider's spec says its raw status means."""
    failed = {"status": JobStatus.FAILED.value, "provider_job_id": "p-1"}
    expected = [
        await add_job(sessions, **failed, provider_phase="succeeded", provider_status="new-word"),
        await add_job(sessions, **failed, provider_status="succeeded"),  # replicate, no phase
        await add_job(sessions, **failed, provider="kie", provider_status="success"),
        await add_job(sessions, **failed, provider="fal", provider_status="COMPLETED"),
    ]
    ignored = [
        # another provider's success word means nothing for this one
        await add_job(sessions, **failed, provider="kie", provider_status="succeeded"),
        # the phase, once recorded, is what counts
        await add_job(sessions, **failed, provider="fal", provider_status="COMPLETED",
                      provider_phase="failed"),
        await add_job(sessions, **failed, provider_status="failed"),
    ]  # fmt: skip
    _, suspects = await sweeper(sessions, temporal, settings, fetcher)._suspects()
    found = {s.job.id for s in suspects if s.problem == "store_failed"}
    assert found == {job.id for job in expected}
    assert not found & {job.id for job in ignored}
