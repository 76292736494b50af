"""The retention cleanup: delete the stored objects of succeeded jobs past their retention
period and mark them `expired`, keeping every output a project's node shows.

A job is due when it `succeeded`, ended (`completed_at`) longer ago than the retention days of
its storage context (OUTPUT_RETENTION_DAYS_BY_CONTEXT, else OUTPUT_RETENTION_DAYS; neither set:
never), and was stored by the backend this process uses (a job stored on another backend is left
alone rather than deleting keys from the wrong place). A job the recovery sweep is restoring
(`recovery_state` "restoring") waits for a later run.

Order, so that a crash at any point is finished by the next run and nothing is deleted twice
or from under a reader that could still get it:

1. claim: `succeeded` → `expired` (+ `expired_at`), one UPDATE guarded by the status, with a
   `job.expired` event each; from here the API answers 410 for its outputs and the recovery
   sweep (which restores missing objects of `succeeded` jobs only) leaves it alone;
2. delete its objects (both backends treat a missing object as deleted);
3. stamp `objects_deleted_at`. A job `expired` without it is pending: every batch first
   finishes those.

Referenced by a project: a node of a project of the job's user, or of the job's own project,
whose `data.requestId` is the job, or that links one of its outputs (`/v1/jobs/{id}/outputs`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from core.contracts import JobStatus
from core.events import append_events, job_payload, user_topic
from core.jobs.store import RESTORING
from core.models import Job, Project, utcnow
from core.retention.contracts import RetentionBatchInput, RetentionBatchResult
from core.settings import Settings

_OUTPUT_LINK = re.compile(r"/v1/jobs/([A-Za-z0-9_.-]+)/outputs")


class ObjectStore(Protocol):
    """What the cleanup needs of a storage backend (storage.base.Storage has it)."""

    name: str
    bucket: str | None

    async def delete(self, key: str) -> None: ...


def due_condition(settings: Settings, now: datetime) -> ColumnElement[bool]:
    """Jobs whose retention period is over, by their storage context (false: none is set)."""
    overridden = settings.output_retention_days_by_context
    conditions: list[ColumnElement[bool]] = [
        and_(Job.storage_context == context, Job.completed_at < now - timedelta(days=days))
        for context, days in sorted(overridden.items())
    ]
    if settings.output_retention_days is not None:
        ended = Job.completed_at < now - timedelta(days=settings.output_retention_days)
        if overridden:  # the default covers every other context (and jobs without one)
            others = or_(Job.storage_context.is_(None), Job.storage_context.not_in(overridden))
            ended = and_(others, ended)
        conditions.append(ended)
    return or_(*conditions) if conditions else false()


def referenced_job_ids(projects: Iterable[dict[str, Any]]) -> set[str]:
    """Ids of the jobs the projects' nodes show (their `requestId`, or links to outputs)."""
    found: set[str] = set()
    for content in projects:
        nodes = content.get("nodes") if isinstance(content, dict) else None
        for node in nodes if isinstance(nodes, list) else []:
            if not isinstance(node, dict):
                continue
            data = node.get("data")
            if isinstance(data, dict) and isinstance(data.get("requestId"), str):
                found.add(data["requestId"])
            found.update(_OUTPUT_LINK.findall(json.dumps(node)))
    return found


async def _referenced(session: AsyncSession, jobs: Sequence[Job]) -> set[str]:
    users = {job.user_id for job in jobs}
    own = {job.project_id for job in jobs if job.project_id}
    query = select(Project.content).where(
        or_(Project.user_id.in_(users), Project.id.in_(own)) if own else Project.user_id.in_(users)
    )
    contents = (await session.execute(query)).scalars().all()
    return referenced_job_ids(contents) & {job.id for job in jobs}


def _after(completed_at: str | None, job_id: str | None) -> ColumnElement[bool] | None:
    """Jobs after the cursor in (completed_at, id) order."""
    if completed_at is None or job_id is None:
        return None
    at = datetime.fromisoformat(completed_at)
    return or_(Job.completed_at > at, and_(Job.completed_at == at, Job.id > job_id))


async def _delete_objects(
    sessions: async_sessionmaker[AsyncSession], storage: ObjectStore, job_ids: Sequence[str]
) -> int:
    """Delete the objects of `expired` jobs still pending, then stamp them; returns how many."""
    if not job_ids:
        return 0
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Job.id, Job.storage_keys).where(
                    Job.id.in_(job_ids),
                    Job.status == JobStatus.EXPIRED.value,
                    Job.objects_deleted_at.is_(None),
                )
            )
        ).all()
    deleted = 0
    for job_id, keys in rows:
        for key in keys or []:
            await storage.delete(str(key))
            deleted += 1
        async with sessions() as session, session.begin():
            await session.execute(
                update(Job).where(Job.id == job_id).values(objects_deleted_at=utcnow())
            )
    return deleted


def _same_backend(storage: ObjectStore) -> ColumnElement[bool]:
    bucket = (
        Job.storage_bucket.is_(None)
        if storage.bucket is None
        else Job.storage_bucket == storage.bucket
    )
    return and_(Job.storage_provider == storage.name, bucket)


async def run_batch(
    sessions: async_sessionmaker[AsyncSession],
    storage: ObjectStore,
    settings: Settings,
    batch: RetentionBatchInput,
    *,
    now: datetime | None = None,
) -> RetentionBatchResult:
    """One batch: finish pending deletions, then expire up to `batch_size` due jobs after the
    cursor (oldest first), keeping those a project shows."""
    now = now or utcnow()
    result = RetentionBatchResult()
    async with sessions() as session:
        pending = (
            (
                await session.execute(
                    select(Job.id)
                    .where(
                        Job.status == JobStatus.EXPIRED.value,
                        Job.objects_deleted_at.is_(None),
                        _same_backend(storage),
                    )
                    .limit(batch.batch_size)
                )
            )
            .scalars()
            .all()
        )
    result.objects_deleted += await _delete_objects(sessions, storage, pending)

    query = (
        select(Job)
        .where(
            Job.status == JobStatus.SUCCEEDED.value,
            Job.completed_at.is_not(None),
            # a restore the recovery sweep is making: its objects are being written right now
            or_(Job.recovery_state.is_(None), Job.recovery_state != RESTORING),
            _same_backend(storage),
            due_condition(settings, now),
        )
        .order_by(Job.completed_at, Job.id)
        .limit(batch.batch_size)
    )
    after = _after(batch.after_completed_at, batch.after_id)
    if after is not None:
        query = query.where(after)
    async with sessions() as session, session.begin():
        due = (await session.execute(query)).scalars().all()
        result.looked_at = len(due)
        if not due:
            return result
        last = due[-1]
        assert last.completed_at is not None
        result.last_completed_at, result.last_id = last.completed_at.isoformat(), last.id
        result.done = len(due) < batch.batch_size
        keep = await _referenced(session, due)
        result.kept = len(keep)
        expire = [job.id for job in due if job.id not in keep]
        claimed: list[Job] = []
        if expire:
            claimed = list(
                (
                    await session.execute(
                        update(Job)
                        .where(Job.id.in_(expire), Job.status == JobStatus.SUCCEEDED.value)
                        .values(status=JobStatus.EXPIRED.value, expired_at=now, updated_at=now)
                        .returning(Job)
                        .execution_options(synchronize_session=False)
                    )
                )
                .scalars()
                .all()
            )
            by_user: dict[str, list[tuple[str, dict[str, Any]]]] = {}
            for job in claimed:
                by_user.setdefault(job.user_id, []).append(("job.expired", job_payload(job)))
            for user_id, events in sorted(by_user.items()):
                await append_events(session, user_topic(user_id), events)
        result.expired = len(claimed)
    result.objects_deleted += await _delete_objects(sessions, storage, [j.id for j in claimed])
    return result
