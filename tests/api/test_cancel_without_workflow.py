"""Cancelling a job or a sync run whose workflow is not running (core.jobs.cancel,
core.sync_runs): a queued job that never reached a provider is cancelled in our records, one
that did is left for the recovery sweep, a job that moved on meanwhile keeps its status, and an
unreachable Temporal changes nothing. The Temporal client is a fake that answers as told."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import CANCEL_SIGNAL, JobStatus, SyncMode, SyncStatus
from core.jobs.cancel import Cancelled, cancel_job
from core.jobs.store import advance_job
from core.models import Job, SyncRun
from core.starts import Unreachable
from core.sync_runs import store
from core.sync_runs.start import cancel_run

NOT_FOUND = RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
DOWN = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


class FakeTemporal:
    """Records each signal; raises `fails` if given, after running `meanwhile`."""

    def __init__(
        self,
        fails: BaseException | None = None,
        meanwhile: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.fails = fails
        self.meanwhile = meanwhile
        self.signals: list[tuple[str, str, Any]] = []
        self._workflow_id = ""

    def get_workflow_handle(self, workflow_id: str) -> FakeTemporal:
        self._workflow_id = workflow_id
        return self

    async def signal(self, name: str, arg: Any) -> None:
        self.signals.append((self._workflow_id, name, arg))
        if self.meanwhile is not None:
            await self.meanwhile()
        if self.fails is not None:
            raise self.fails


async def add_job(sessions: async_sessionmaker[AsyncSession], **fields: Any) -> Job:
    values: dict[str, Any] = dict(
        id="j1", user_id="alice", kind="generation", provider="replicate", model="owner/name",
        input={"prompt": "a fox"}, status=JobStatus.QUEUED.value,
    )  # fmt: skip
    values.update(fields)
    async with sessions() as session, session.begin():
        session.add(Job(**values))
    async with sessions() as session:
        job = await session.get(Job, values["id"])
        assert job is not None
        return job


async def status_of(sessions: async_sessionmaker[AsyncSession], job_id: str) -> str:
    async with sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job.status


async def cancel(
    sessions: async_sessionmaker[AsyncSession], temporal: FakeTemporal, job: Job
) -> tuple[Cancelled, Job]:
    async with sessions() as session:
        found = await session.get(Job, job.id)
        assert found is not None
        return await cancel_job(temporal, session, found, "changed my mind")  # type: ignore[arg-type]


async def test_a_running_job_is_told_and_left_to_its_workflow(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    job = await add_job(sessions, status=JobStatus.PROCESSING.value, provider_job_id="p1")
    temporal = FakeTemporal()
    outcome, _ = await cancel(sessions, temporal, job)
    assert outcome == Cancelled.SIGNALED
    assert temporal.signals == [("media-job-j1", CANCEL_SIGNAL, "changed my mind")]
    assert await status_of(sessions, job.id) == JobStatus.PROCESSING.value


async def test_a_queued_job_without_a_workflow_is_cancelled_in_our_records(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    job = await add_job(sessions)
    outcome, now = await cancel(sessions, FakeTemporal(NOT_FOUND), job)
    assert (outcome, now.status, now.error) == (
        Cancelled.CANCELED, JobStatus.CANCELED.value, "changed my mind"
    )  # fmt: skip
    assert await status_of(sessions, job.id) == JobStatus.CANCELED.value


async def test_a_job_that_reached_a_provider_is_left_for_the_sweep_to_adopt(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    job = await add_job(sessions, provider_job_id="p1")
    outcome, _ = await cancel(sessions, FakeTemporal(NOT_FOUND), job)
    assert outcome == Cancelled.STRANDED
    assert await status_of(sessions, job.id) == JobStatus.QUEUED.value


async def test_a_job_that_moved_on_meanwhile_keeps_its_status(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    job = await add_job(sessions)

    async def finished_meanwhile() -> None:
        async with sessions() as other, other.begin():
            await advance_job(other, job.id, JobStatus.SUCCEEDED)

    outcome, now = await cancel(sessions, FakeTemporal(NOT_FOUND, finished_meanwhile), job)
    assert (outcome, now.status) == (Cancelled.MOVED_ON, JobStatus.SUCCEEDED.value)


async def test_an_unreachable_temporal_changes_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    job = await add_job(sessions)
    with pytest.raises(Unreachable, match="connection refused"):
        await cancel(sessions, FakeTemporal(DOWN), job)
    assert await status_of(sessions, job.id) == JobStatus.QUEUED.value


async def test_a_run_without_a_workflow_is_ended_here_and_frees_its_company(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        run = store.new_run(
            company_id="acme", mode=SyncMode.INCREMENTAL, modules=["vendas"], triggered_by="root"
        )
        session.add(run)
        await session.commit()
        assert await store.active_run_id(session, "acme") == run.id
        temporal = FakeTemporal(NOT_FOUND)
        assert not await cancel_run(temporal, run.id, "canceled by root")  # type: ignore[arg-type]
        assert temporal.signals == [(f"sync-run-{run.id}", CANCEL_SIGNAL, "canceled by root")]
        await store.end_unstarted(session, run, SyncStatus.CANCELED, "canceled before it started")
    async with sessions() as session:
        ended = await session.get(SyncRun, run.id)
        assert ended is not None
        assert (ended.status, ended.error_message) == ("CANCELED", "canceled before it started")
        assert ended.finished_at is not None
        assert await store.active_run_id(session, "acme") is None
    with pytest.raises(Unreachable):
        await cancel_run(FakeTemporal(DOWN), run.id, "canceled by root")  # type: ignore[arg-type]
