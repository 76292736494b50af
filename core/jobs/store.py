"""Reads and writes of the `jobs` table, shared by the API and the activities.

Writes are idempotent: a status only moves forward (`JOB_STATUS_RANK`), so a retried activity,
a replayed workflow or a late duplicate can never move a finished job back. The one move
between final statuses is failed → succeeded, for a job whose outputs the recovery sweep
restores (`recovery_state` "restoring", set by the sweep's claim).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from core.contracts import JOB_STATUS_RANK, TERMINAL_JOB_STATUSES, JobStatus
from core.db import newest_first
from core.events import append_event, job_payload, project_topic, user_topic
from core.models import Job, Project, RecoveryAttempt, utcnow

# `jobs.recovery_state` while the recovery sweep restores a job's outputs (its claim), and once
# the restored copy is recorded.
RESTORING = "restoring"
RECOVERED = "recovered"


def statuses_before(status: JobStatus, *, inclusive: bool = False) -> list[str]:
    rank = JOB_STATUS_RANK[status]
    return [s.value for s, r in JOB_STATUS_RANK.items() if r < rank or (inclusive and s == status)]


async def advance_job(session: AsyncSession, job_id: str, status: JobStatus, **fields: Any) -> bool:
    """Move a job to `status` (or refresh it in that status) unless it is already past it.

    Each change appends a `job.{status}` event to the owner's topic and, when the job ends
    with a project node, updates that node (`project.node_updated`), all in the caller's
    transaction. Returns whether a row changed. The caller commits.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": status.value, "updated_at": now, **fields}
    if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED):
        values.setdefault("completed_at", now)
    if status == JobStatus.SUBMITTED:
        values.setdefault("submitted_at", now)
    allowed: ColumnElement[bool] = Job.status.in_(statuses_before(status, inclusive=True))
    if status == JobStatus.SUCCEEDED:
        # The one move between final statuses: a job that failed only because its outputs
        # could not be stored succeeds once a restore (claimed by the recovery sweep) stored them.
        allowed = or_(
            allowed, and_(Job.status == JobStatus.FAILED.value, Job.recovery_state == RESTORING)
        )
        values.setdefault(
            "recovery_state",
            case((Job.recovery_state == RESTORING, RECOVERED), else_=Job.recovery_state),
        )
    job = (
        await session.execute(
            update(Job)
            .where(Job.id == job_id, allowed)
            .values(**values)
            .returning(Job)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one_or_none()
    if job is None:
        return False
    if job.project_id and job.node_id and status in TERMINAL_JOB_STATUSES:
        await update_project_node(session, job)
    await append_event(session, user_topic(job.user_id), f"job.{job.status}", job_payload(job))
    return True


NODE_STATUS = {
    JobStatus.SUCCEEDED.value: "completed",
    JobStatus.FAILED.value: "failed",
    JobStatus.CANCELED.value: "canceled",
}


def output_path(job_id: str, index: int) -> str:
    """Where the API serves a stored output (relative to its base URL)."""
    return f"/v1/jobs/{job_id}/outputs/{index}"


async def update_project_node(session: AsyncSession, job: Job) -> None:
    """Record a finished job in its project's node (seed 003's `content.nodes[].data`)."""
    project = await session.get(Project, job.project_id, with_for_update=True)
    if project is None:
        return
    content = copy.deepcopy(project.content or {})
    node = next(
        (n for n in content.get("nodes", []) if isinstance(n, dict) and n.get("id") == job.node_id),
        None,
    )
    if node is None:
        return
    now = utcnow()
    data = node.setdefault("data", {})
    data.update(
        loading=False,
        status=NODE_STATUS.get(job.status, job.status),
        requestId=job.id,
        updatedAt=now.isoformat(),
    )
    if job.status == JobStatus.SUCCEEDED.value and job.outputs:
        first = job.outputs[0]
        kind = "video" if str(first.get("content_type", "")).startswith("video/") else "image"
        data["generated"] = {"url": output_path(job.id, int(first.get("index", 0))), "type": kind}
    if job.error:
        data["error"] = job.error
    project.content = content
    project.updated_at = now
    await session.flush()
    await append_event(
        session,
        project_topic(project.id),
        "project.node_updated",
        {"project_id": project.id, "node_id": job.node_id, "job_id": job.id, "node": node,
         "updated_at": now.isoformat()},
    )  # fmt: skip


async def get_job(session: AsyncSession, job_id: str) -> Job | None:
    return await session.get(Job, job_id)


async def list_jobs(
    session: AsyncSession,
    *,
    user_id: str | None,
    kind: str | None = None,
    status: str | None = None,
    project_id: str | None = None,
    provider: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> Sequence[Job]:
    """Newest first; `before` is the (created_at, id) of the last row of the previous page;
    `created_from` is inclusive and `created_to` exclusive."""
    query = select(Job)
    if user_id is not None:
        query = query.where(Job.user_id == user_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if status is not None:
        query = query.where(Job.status == status)
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    if provider is not None:
        query = query.where(Job.provider == provider)
    if created_from is not None:
        query = query.where(Job.created_at >= created_from)
    if created_to is not None:
        query = query.where(Job.created_at < created_to)
    query = newest_first(query, Job.created_at, Job.id, before, limit)
    return (await session.scalars(query)).all()


async def find_tracked(
    session: AsyncSession, provider: str, provider_job_id: str
) -> tuple[str, str] | None:
    """(job id, owner's user id) of the job that follows this provider job, if one does."""
    row = (
        await session.execute(
            select(Job.id, Job.user_id).where(
                Job.provider == provider, Job.provider_job_id == provider_job_id
            )
        )
    ).first()
    return (row.id, row.user_id) if row is not None else None


async def record_adopted(session: AsyncSession, job: Job, by: str) -> None:
    """Record an adopted job (queued, with its provider job), the recovery attempt that says
    who adopted it, and its `job.queued` event; commits."""
    session.add(job)
    await session.flush()
    session.add(
        RecoveryAttempt(
            job_id=job.id, problem="orphan", action="adopt", result="started",
            detail=f"adopted by {by}",
        )
    )  # fmt: skip
    await append_event(session, user_topic(job.user_id), "job.queued", job_payload(job))
    await session.commit()
