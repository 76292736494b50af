"""A batch's chunk activity (activities.bulk_jobs) against a real app DB and a fake Temporal
client: each job is acted on once however often a chunk runs, finished jobs are skipped, and a
rerun whose outcome was lost finds the job it made instead of making another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.bulk_jobs import BulkJobActivities
from core.batch_contracts import BatchAction, BatchChunk, BatchEnd, BatchProgress
from core.contracts import CANCEL_SIGNAL, JobStatus
from core.events import batch_topic
from core.jobs.bulk import record_batch
from core.jobs.rerun import batch_rerun_id
from core.models import Event, Job, JobBatch, JobBatchItem
from core.settings import Settings

DOWN = RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


class FakeTemporal:
    """Records signals and starts; a second start of one id is refused, as Temporal does."""

    def __init__(self) -> None:
        self.signals: list[tuple[str, str]] = []
        self.started: list[str] = []
        self.down = False
        self._workflow_id = ""

    def get_workflow_handle(self, workflow_id: str) -> FakeTemporal:
        self._workflow_id = workflow_id
        return self

    async def signal(self, name: str, arg: Any) -> None:
        if self.down:
            raise DOWN
        self.signals.append((self._workflow_id, name))

    async def start_workflow(self, workflow: str, arg: Any, *, id: str, **kw: Any) -> None:
        if self.down:
            raise DOWN
        if id in self.started:
            raise WorkflowAlreadyStartedError(id, workflow)
        self.started.append(id)


def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        secret_key="test-secret-key-0123456789",
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        storage_dir=str(tmp_path / "storage"),
        bulk_concurrency=2,
    )


async def setup(
    sessions: async_sessionmaker[AsyncSession], action: BatchAction, statuses: list[JobStatus]
) -> list[str]:
    ids = [f"job{n}" for n in range(len(statuses))]
    async with sessions() as session, session.begin():
        for job_id, status in zip(ids, statuses, strict=True):
            session.add(
                Job(
                    id=job_id, user_id="alice", kind="generation", provider="replicate",
                    model="owner/name", input={"prompt": f"fox {job_id}"}, status=status.value,
                    provider_job_id=f"p-{job_id}",
                )
            )  # fmt: skip
    async with sessions() as session:
        await record_batch(
            session, batch_id="b1", user_id="alice", action=action, all_users=False,
            criteria={"ids": len(ids), "as_admin": False}, job_ids=ids,
        )  # fmt: skip
    return ids


def chunk(action: BatchAction, start: int, size: int) -> BatchChunk:
    return BatchChunk(batch_id="b1", action=action.value, start=start, size=size)


async def test_a_cancel_chunk_signals_each_job_once_and_skips_finished_ones(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    temporal = FakeTemporal()
    ids = await setup(
        sessions, BatchAction.CANCEL,
        [JobStatus.PROCESSING, JobStatus.SUCCEEDED, JobStatus.SUBMITTED, JobStatus.PROCESSING],
    )  # fmt: skip
    acts = BulkJobActivities(sessions=sessions, temporal=temporal, settings=settings(tmp_path))  # type: ignore[arg-type]
    env = ActivityEnvironment()
    first = await env.run(acts.run_chunk, chunk(BatchAction.CANCEL, 0, 3))
    assert first == BatchProgress(total=4, done=2, failed=0, skipped=1)
    # The same chunk again (a retry after a crash): nothing is signalled twice.
    again = await env.run(acts.run_chunk, chunk(BatchAction.CANCEL, 0, 3))
    assert again == first
    last = await env.run(acts.run_chunk, chunk(BatchAction.CANCEL, 3, 1))
    assert last == BatchProgress(total=4, done=3, failed=0, skipped=1)
    assert sorted(temporal.signals) == [(f"media-job-{ids[n]}", CANCEL_SIGNAL) for n in (0, 2, 3)]
    end = await env.run(acts.finish, BatchEnd(batch_id="b1"))
    assert end == last
    async with sessions() as session:
        batch = await session.get(JobBatch, "b1")
        assert batch is not None
        assert (batch.status, batch.done, batch.skipped, batch.completed_at is not None) == (
            "done", 3, 1, True,
        )  # fmt: skip
        types = (
            await session.scalars(
                select(Event.type).where(Event.topic == batch_topic("b1")).order_by(Event.id)
            )
        ).all()
    assert types[0] == "batch.running" and types[-1] == "batch.done"
    assert types.count("batch.progress") == 3


async def test_a_chunk_that_cannot_reach_temporal_keeps_what_it_did_and_is_retried(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    temporal = FakeTemporal()
    await setup(sessions, BatchAction.CANCEL, [JobStatus.PROCESSING, JobStatus.CANCELED])
    acts = BulkJobActivities(sessions=sessions, temporal=temporal, settings=settings(tmp_path))  # type: ignore[arg-type]
    env = ActivityEnvironment()
    temporal.down = True
    with pytest.raises(Exception, match="could not be acted on now"):
        await env.run(acts.run_chunk, chunk(BatchAction.CANCEL, 0, 2))
    temporal.down = False
    done = await env.run(acts.run_chunk, chunk(BatchAction.CANCEL, 0, 2))
    assert done == BatchProgress(total=2, done=1, failed=0, skipped=1)
    assert len(temporal.signals) == 1


async def test_a_rerun_chunk_makes_one_new_job_per_old_job_even_when_its_outcome_was_lost(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    temporal = FakeTemporal()
    ids = await setup(sessions, BatchAction.RERUN, [JobStatus.FAILED, JobStatus.CANCELED])
    acts = BulkJobActivities(sessions=sessions, temporal=temporal, settings=settings(tmp_path))  # type: ignore[arg-type]
    env = ActivityEnvironment()
    progress = await env.run(acts.run_chunk, chunk(BatchAction.RERUN, 0, 2))
    assert progress == BatchProgress(total=2, done=2, failed=0, skipped=0)
    # The outcomes lost (a crash between the rerun and its record): the chunk runs again.
    async with sessions() as session, session.begin():
        await session.execute(update(JobBatchItem).values(outcome=None, new_job_id=None))
    again = await env.run(acts.run_chunk, chunk(BatchAction.RERUN, 0, 2))
    assert again == progress
    async with sessions() as session:
        reruns = (await session.scalars(select(Job).where(Job.rerun_of.is_not(None)))).all()
        items = (await session.scalars(select(JobBatchItem).order_by(JobBatchItem.seq))).all()
        assert await session.scalar(select(func.count()).select_from(Job)) == 4
    assert sorted((j.rerun_of, j.id) for j in reruns) == sorted(
        (old, batch_rerun_id("b1", old)) for old in ids
    )
    assert [i.new_job_id for i in items] == [batch_rerun_id("b1", old) for old in ids]
    assert {j.input["prompt"] for j in reruns} == {f"fox {old}" for old in ids}
    assert all(j.status == JobStatus.QUEUED.value and j.user_id == "alice" for j in reruns)
    # Each new job's workflow was started once (the second start was refused as existing).
    assert sorted(temporal.started) == sorted(f"media-job-{j.id}" for j in reruns)


async def test_a_rerun_the_provider_would_refuse_fails_its_item_only(
    sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    temporal = FakeTemporal()
    await setup(sessions, BatchAction.RERUN, [JobStatus.FAILED, JobStatus.FAILED])
    async with sessions() as session, session.begin():
        await session.execute(update(Job).where(Job.id == "job0").values(input={"prompt": 5}))
    acts = BulkJobActivities(sessions=sessions, temporal=temporal, settings=settings(tmp_path))  # type: ignore[arg-type]
    progress = await ActivityEnvironment().run(acts.run_chunk, chunk(BatchAction.RERUN, 0, 2))
    assert progress == BatchProgress(total=2, done=1, failed=1, skipped=0)
    async with sessions() as session:
        item = await session.get(JobBatchItem, ("b1", 0))
        assert item is not None and item.outcome == "failed"
        assert item.error is not None and "prompt" in item.error
