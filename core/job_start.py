"""Starting a job's workflow: shared by the API (new and adopted jobs) and the recovery sweep."""

from __future__ import annotations

from urllib.parse import urlencode

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

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
from core.tokens import webhook_token
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
    """The URL a provider calls back for this job; its token binds the URL to the job."""
    token = webhook_token(settings.signing_secret(), job_id)
    base = settings.public_base_url.rstrip("/")
    return f"{base}/webhooks/{provider}?{urlencode({'job_id': job_id, 'token': token})}"


async def start_job_workflow(
    client: Client, settings: Settings, job: MediaJobInput, *, first: bool = False
) -> None:
    """Start the job's workflow (`media-job-{id}`; a closed one's id may be used again).

    `first`: only if the job never had a workflow (else WorkflowAlreadyStartedError), so a
    start retried after a crash can't run a second one.
    """
    await client.start_workflow(
        MediaJobWorkflow.run,
        job,
        id=media_job_workflow_id(job.job_id),
        task_queue=settings.media_task_queue,
        id_reuse_policy=(
            WorkflowIDReusePolicy.REJECT_DUPLICATE
            if first
            else WorkflowIDReusePolicy.ALLOW_DUPLICATE
        ),
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
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
