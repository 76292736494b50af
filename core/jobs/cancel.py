"""Cancelling a job: its workflow is told (it reaches the provider and ends the job
`canceled`); a job without a workflow is cancelled here when it never reached a provider."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from core.contracts import CANCEL_SIGNAL, JobStatus, media_job_workflow_id
from core.jobs.store import advance_job, get_job
from core.models import Job
from core.starts import signal_workflow


class Cancelled(StrEnum):
    SIGNALED = "signaled"  # its workflow was told
    CANCELED = "canceled"  # it had no workflow and never reached a provider: canceled here
    # No workflow, but a provider job: the recovery sweep adopts it, and then it can be
    # cancelled.
    STRANDED = "stranded"
    MOVED_ON = "moved_on"  # no workflow when asked; one started since and moved the job on


async def cancel_job(
    client: Client, session: AsyncSession, job: Job, reason: str
) -> tuple[Cancelled, Job]:
    """Cancel a job that is not finished: what happened, and the job as it is now.

    Raises `core.starts.Unreachable` (nothing changed) when Temporal can't be asked.
    """
    if await signal_workflow(client, media_job_workflow_id(job.id), CANCEL_SIGNAL, reason):
        return Cancelled.SIGNALED, job
    # No running workflow: its start failed or was lost.
    if job.status != JobStatus.QUEUED.value or job.provider_job_id is not None:
        return Cancelled.STRANDED, job
    job_id = job.id
    await session.rollback()  # end the reads before writing (SQLite)
    # Forward-only: a workflow that started meanwhile and moved the job on keeps it.
    await advance_job(session, job_id, JobStatus.CANCELED, error=reason)
    await session.commit()
    refreshed = await get_job(session, job_id)
    assert refreshed is not None
    if refreshed.status != JobStatus.CANCELED.value:
        return Cancelled.MOVED_ON, refreshed
    return Cancelled.CANCELED, refreshed
