"""Starting a job's workflow: shared by the API (new and adopted jobs) and the recovery sweep."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from core.contracts import (
    SA_KIND,
    SA_PROVIDER,
    SA_STATUS,
    SA_USER,
    JobKind,
    JobStatus,
    MediaJobInput,
    PollPolicy,
    media_job_workflow_id,
)
from core.settings import Settings
from workflows.media_job import MediaJobWorkflow, start_options


def poll_policy(settings: Settings, kind: JobKind) -> PollPolicy:
    return PollPolicy(
        interval_seconds=settings.poll_interval_seconds,
        backoff_after_seconds=settings.poll_backoff_after_seconds,
        max_seconds=(
            settings.training_max_poll_interval_seconds
            if kind == JobKind.TRAINING
            else settings.max_poll_interval_seconds
        ),
    )


def webhook_url(settings: Settings, provider: str, job_id: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/webhooks/{provider}?job_id={job_id}"


async def start_job_workflow(client: Client, settings: Settings, job: MediaJobInput) -> None:
    """Start the job's workflow (`media-job-{id}`; a closed one's id may be used again)."""
    await client.start_workflow(
        MediaJobWorkflow.run,
        job,
        id=media_job_workflow_id(job.job_id),
        task_queue=settings.media_task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SA_USER, job.user_id),
                SearchAttributePair(SA_KIND, job.kind.value),
                SearchAttributePair(SA_PROVIDER, job.provider),
                SearchAttributePair(SA_STATUS, JobStatus.QUEUED.value),
            ]
        ),
        **start_options(job),
    )
