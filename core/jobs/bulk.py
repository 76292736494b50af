"""Bulk actions on jobs: a cancel or rerun of many jobs at once, as a batch.

The API matches the jobs when it is asked (by ids or by a filter, the caller's own jobs unless
an admin asks for every user's), records them in order as the batch's items in the transaction
that records the batch, and starts the batch's workflow (`workflows.bulk_jobs`); its
activities act on the items chunk by chunk (`act_on_item`), each item once: an item's outcome
is written as soon as it is known and a chunk acts only on items without one.

Progress is counted from the items (never added up, so a retried chunk can't count twice),
kept on the batch row and published on the batch's topic (`batch:{id}`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from core.batch_contracts import (
    JOB_BATCH_WORKFLOW,
    BatchAction,
    BatchProgress,
    BatchStatus,
    ItemOutcome,
    JobBatchInput,
    job_batch_workflow_id,
)
from core.contracts import SA_USER, TERMINAL_JOB_STATUSES, JobStatus
from core.events import append_event, batch_topic
from core.jobs.cancel import Cancelled, cancel_job
from core.jobs.rerun import RerunRefused, batch_rerun_id, rerun_job
from core.jobs.store import advance_job, get_job
from core.models import Job, JobBatch, JobBatchItem, utcnow
from core.settings import Settings
from core.starts import StartOutcome, StartResult, Unreachable, start_resolved

BULK_CANCEL_REASON = "canceled in bulk"


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a filter matches: every field given must hold (lists: any of them)."""

    status: Sequence[str] = ()
    kind: Sequence[str] = ()
    provider: Sequence[str] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    project_id: str | None = None


@dataclass(frozen=True)
class Selection:
    """The jobs a batch is asked for: `ids` or `filter` (exactly one), of `user_id`'s jobs
    (None: every user's)."""

    user_id: str | None
    ids: Sequence[str] | None = None
    filter: JobFilter | None = None


async def match_jobs(session: AsyncSession, selection: Selection, limit: int) -> list[str]:
    """The ids of the jobs selected, oldest first; at most `limit` of them."""
    query = select(Job.id)
    if selection.user_id is not None:
        query = query.where(Job.user_id == selection.user_id)
    if selection.ids is not None:
        query = query.where(Job.id.in_(list(dict.fromkeys(selection.ids))))
    chosen = selection.filter
    if chosen is not None:
        if chosen.status:
            query = query.where(Job.status.in_(list(chosen.status)))
        if chosen.kind:
            query = query.where(Job.kind.in_(list(chosen.kind)))
        if chosen.provider:
            query = query.where(Job.provider.in_(list(chosen.provider)))
        if chosen.created_after is not None:
            query = query.where(Job.created_at >= chosen.created_after)
        if chosen.created_before is not None:
            query = query.where(Job.created_at < chosen.created_before)
        if chosen.project_id is not None:
            query = query.where(Job.project_id == chosen.project_id)
    query = query.order_by(Job.created_at, Job.id).limit(limit)
    return list((await session.scalars(query)).all())


def batch_payload(batch: JobBatch) -> dict[str, Any]:
    """What a batch's events carry: its status and counts."""
    return {
        "batch_id": batch.id,
        "action": batch.action,
        "status": batch.status,
        "total": batch.total,
        "done": batch.done,
        "failed": batch.failed,
        "skipped": batch.skipped,
        "error": batch.error,
    }


async def record_batch(
    session: AsyncSession,
    *,
    batch_id: str,
    user_id: str,
    action: BatchAction,
    all_users: bool,
    criteria: dict[str, Any],
    job_ids: Sequence[str],
) -> JobBatch:
    """Record the batch and its items (in order) with a `batch.running` event, and commit."""
    batch = JobBatch(
        id=batch_id, user_id=user_id, action=action.value, all_users=all_users,
        criteria=criteria, status=BatchStatus.RUNNING.value, total=len(job_ids), done=0,
        failed=0, skipped=0,
    )  # fmt: skip
    session.add(batch)
    await session.flush()
    if job_ids:
        await session.execute(
            insert(cast(Table, JobBatchItem.__table__)),
            [{"batch_id": batch_id, "seq": seq, "job_id": job_id}
             for seq, job_id in enumerate(job_ids)],
        )  # fmt: skip
    await append_event(session, batch_topic(batch_id), "batch.running", batch_payload(batch))
    await session.commit()
    return batch


async def start_batch(client: Client, settings: Settings, batch: JobBatch) -> StartResult:
    """Start the batch's workflow (`job-batch-{id}`), resolving a lost answer."""
    workflow_id = job_batch_workflow_id(batch.id)
    batch_input = JobBatchInput(
        batch_id=batch.id, action=batch.action, total=batch.total,
        chunk_size=settings.bulk_chunk_size,
    )  # fmt: skip

    async def start() -> None:
        await client.start_workflow(
            JOB_BATCH_WORKFLOW,
            batch_input,
            id=workflow_id,
            task_queue=settings.media_task_queue,
            search_attributes=TypedSearchAttributes([SearchAttributePair(SA_USER, batch.user_id)]),
            static_summary=f"{batch.action} {batch.total} jobs · user {batch.user_id}",
        )

    return await start_resolved(client, workflow_id, start)


async def get_batch(session: AsyncSession, batch_id: str) -> JobBatch | None:
    return await session.get(JobBatch, batch_id)


async def count_outcomes(session: AsyncSession, batch_id: str) -> BatchProgress:
    """The batch's progress, counted from its items."""
    rows = await session.execute(
        select(JobBatchItem.outcome, func.count())
        .where(JobBatchItem.batch_id == batch_id)
        .group_by(JobBatchItem.outcome)
    )
    counts = {outcome: int(n) for outcome, n in rows.all()}
    return BatchProgress(
        total=sum(counts.values()),
        done=counts.get(ItemOutcome.DONE.value, 0),
        failed=counts.get(ItemOutcome.FAILED.value, 0),
        skipped=counts.get(ItemOutcome.SKIPPED.value, 0),
    )


async def publish_progress(
    session: AsyncSession,
    batch_id: str,
    *,
    end: BatchStatus | None = None,
    error: str | None = None,
) -> BatchProgress:
    """Count the batch's items, record the counts on the batch (its end too, if `end`) and
    publish them on its topic (`batch.progress`, or `batch.{status}` at the end); commits."""
    progress = await count_outcomes(session, batch_id)
    await session.rollback()  # end the reads before writing (SQLite)
    values: dict[str, Any] = {
        "done": progress.done, "failed": progress.failed, "skipped": progress.skipped,
        "updated_at": utcnow(),
    }  # fmt: skip
    if end is not None:
        values |= {"status": end.value, "error": error, "completed_at": utcnow()}
    batch = (
        await session.execute(
            update(JobBatch)
            .where(JobBatch.id == batch_id)
            .values(**values)
            .returning(JobBatch)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    type_ = f"batch.{end.value}" if end is not None else "batch.progress"
    await append_event(session, batch_topic(batch_id), type_, batch_payload(batch))
    await session.commit()
    return progress


async def finish_batch(session: AsyncSession, batch_id: str, error: str) -> None:
    """End a batch whose workflow could not start (`failed`, nothing done); commits."""
    await publish_progress(session, batch_id, end=BatchStatus.FAILED, error=error)


async def pending_items(
    session: AsyncSession, batch_id: str, start: int, size: int
) -> list[tuple[int, str]]:
    """`(seq, job_id)` of the chunk's items that have no outcome yet."""
    rows = await session.execute(
        select(JobBatchItem.seq, JobBatchItem.job_id)
        .where(
            JobBatchItem.batch_id == batch_id,
            JobBatchItem.seq >= start,
            JobBatchItem.seq < start + size,
            JobBatchItem.outcome.is_(None),
        )
        .order_by(JobBatchItem.seq)
    )
    return [(int(seq), str(job_id)) for seq, job_id in rows.all()]


async def failures(session: AsyncSession, batch_id: str, limit: int) -> list[JobBatchItem]:
    """The batch's failed items, first first."""
    rows = await session.scalars(
        select(JobBatchItem)
        .where(JobBatchItem.batch_id == batch_id, JobBatchItem.outcome == ItemOutcome.FAILED.value)
        .order_by(JobBatchItem.seq)
        .limit(limit)
    )
    return list(rows.all())


@dataclass
class ItemResult:
    outcome: ItemOutcome
    new_job_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class BatchRef:
    """What acting on a batch's items needs to know of it (plain values: the activities end
    their sessions' transactions between items)."""

    id: str
    action: str
    user_id: str  # who asked
    as_admin: bool  # whether they asked with an admin's key
    reason: str = BULK_CANCEL_REASON  # a cancel's


async def batch_ref(session: AsyncSession, batch_id: str) -> BatchRef | None:
    batch = await get_batch(session, batch_id)
    if batch is None:
        return None
    criteria = batch.criteria or {}
    return BatchRef(
        batch.id, batch.action, batch.user_id, bool(criteria.get("as_admin")),
        str(criteria.get("reason") or BULK_CANCEL_REASON),
    )  # fmt: skip


class RetryLater(Exception):
    """The item can't be acted on now (Temporal unreachable): its chunk is tried again."""


async def act_on_item(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    batch: BatchRef,
    job_id: str,
) -> ItemResult:
    """Cancel or rerun one job of the batch. Raises RetryLater (or the database's error) when
    it can't be done now; acting again later is safe (a cancel signal is idempotent, a rerun's
    job id is the batch's own for that job)."""
    job = await get_job(session, job_id)
    if job is None:
        return ItemResult(ItemOutcome.FAILED, error=f"job {job_id} is gone")
    if batch.action == BatchAction.CANCEL.value:
        return await _cancel(session, client, job, batch.reason)
    as_admin, requester = batch.as_admin, batch.user_id
    try:
        made, started = await rerun_job(
            session, client, settings, job, None, is_admin=as_admin,
            can_see=lambda owner: as_admin or owner == requester,
            new_id=batch_rerun_id(batch.id, job_id),
        )  # fmt: skip
    except RerunRefused as exc:
        return ItemResult(ItemOutcome.FAILED, error=f"{exc.field}: {exc.message}")
    if started is None or started.runs:
        return ItemResult(ItemOutcome.DONE, new_job_id=made.id)
    if started.unavailable or started.outcome == StartOutcome.UNKNOWN:
        # Recorded and queued: the chunk's next attempt finds it and starts it.
        raise RetryLater(f"could not start the rerun of {job_id}: {started.error}")
    error = f"the orchestrator refused the rerun: {started.error}"
    await session.rollback()
    await advance_job(session, made.id, JobStatus.FAILED, error=error)
    await session.commit()
    return ItemResult(ItemOutcome.FAILED, new_job_id=made.id, error=error)


async def _cancel(session: AsyncSession, client: Client, job: Job, reason: str) -> ItemResult:
    job_id = job.id
    if JobStatus(job.status) in TERMINAL_JOB_STATUSES:
        return ItemResult(ItemOutcome.SKIPPED, error=f"already {job.status}")
    try:
        cancelled, now = await cancel_job(client, session, job, reason)
    except Unreachable as exc:
        raise RetryLater(f"could not reach job {job_id}: {exc}") from exc
    if cancelled in (Cancelled.SIGNALED, Cancelled.CANCELED):
        return ItemResult(ItemOutcome.DONE)
    if cancelled == Cancelled.MOVED_ON:
        if JobStatus(now.status) in TERMINAL_JOB_STATUSES:
            return ItemResult(ItemOutcome.SKIPPED, error=f"already {now.status}")
        raise RetryLater(f"job {job_id} moved on to {now.status}; its workflow is told next time")
    return ItemResult(
        ItemOutcome.FAILED,
        error="no running workflow: the recovery sweep adopts it; cancel it again then",
    )


async def record_outcome(
    session: AsyncSession, batch_id: str, seq: int, result: ItemResult
) -> None:
    """Write an item's outcome (only the first one counts); commits."""
    await session.rollback()
    await session.execute(
        update(JobBatchItem)
        .where(
            JobBatchItem.batch_id == batch_id,
            JobBatchItem.seq == seq,
            JobBatchItem.outcome.is_(None),
        )
        .values(outcome=result.outcome.value, new_job_id=result.new_job_id, error=result.error)
    )
    await session.commit()
