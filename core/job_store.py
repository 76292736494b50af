"""Reads and writes of the `jobs` table, shared by the API and the activities.

Writes are idempotent: a status only moves forward (`JOB_STATUS_RANK`), so a retried activity,
a replayed workflow or a late duplicate can never move a finished job back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import JOB_STATUS_RANK, JobStatus
from core.models import Job, utcnow


def statuses_before(status: JobStatus, *, inclusive: bool = False) -> list[str]:
    rank = JOB_STATUS_RANK[status]
    return [s.value for s, r in JOB_STATUS_RANK.items() if r < rank or (inclusive and s == status)]


async def advance_job(session: AsyncSession, job_id: str, status: JobStatus, **fields: Any) -> bool:
    """Move a job to `status` (or refresh it in that status) unless it is already past it.

    Returns whether a row changed. The caller commits.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": status.value, "updated_at": now, **fields}
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED):
        values.setdefault("completed_at", now)
    if status == JobStatus.SUBMITTED:
        values.setdefault("submitted_at", now)
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(statuses_before(status, inclusive=True)))
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


async def get_job(session: AsyncSession, job_id: str) -> Job | None:
    return await session.get(Job, job_id)


async def list_jobs(
    session: AsyncSession,
    *,
    user_id: str | None,
    kind: str | None = None,
    status: str | None = None,
    project_id: str | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> Sequence[Job]:
    """Newest first; `before` is the (created_at, id) of the last row of the previous page."""
    query = select(Job)
    if user_id is not None:
        query = query.where(Job.user_id == user_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None:
        query = query.where(Job.status == status)
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    if before is not None:
        created_at, job_id = before
        query = query.where(
            or_(Job.created_at < created_at, and_(Job.created_at == created_at, Job.id < job_id))
        )
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
