"""Starting a job's workflow: shared by the API (new and adopted jobs) and the recovery sweep.

One builder makes every job's workflow input (`media_job_input`): a job with a provider job
(adopted, or stranded after a crash) is followed, one without is submitted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from core.contracts import (
    MEDIA_JOB_WORKFLOW,
    PRIORITY_DEFAULT,
    SA_KIND,
    SA_PROVIDER,
    SA_STATUS,
    SA_USER,
    AdmissionLimits,
    JobKind,
    JobStatus,
    MediaJobInput,
    PollPolicy,
    media_job_workflow_id,
)
from core.links import output_link, own_output
from core.models import Job
from core.settings import Settings
from core.starts import StartResult, start_resolved
from core.tokens import webhook_token
from providers.inputs import PROMPT_FIELDS

# Where a job's own priority and deadline are kept (Job.metadata), so a restart keeps them.
PRIORITY_KEY = "priority"
DEADLINE_KEY = "deadline_seconds"


def controls_metadata(priority: int, deadline_seconds: float | None) -> dict[str, Any]:
    """What a new job keeps in its metadata of its queue controls (defaults left out)."""
    meta: dict[str, Any] = {}
    if priority != PRIORITY_DEFAULT:
        meta[PRIORITY_KEY] = priority
    if deadline_seconds is not None:
        meta[DEADLINE_KEY] = deadline_seconds
    return meta


def poll_policy(settings: Settings, kind: JobKind) -> PollPolicy:
    return PollPolicy(
        interval_seconds=settings.poll_interval_seconds,
        backoff_after_seconds=settings.poll_backoff_after_seconds,
        max_seconds=(
            settings.training_max_poll_interval_seconds
            if kind == JobKind.TRAINING
            else settings.max_poll_interval_seconds
        ),
        bulk_poller=settings.provider_pollers,
    )


def webhook_url(settings: Settings, provider: str, job_id: str) -> str:
    """The URL a provider calls back for this job; its token binds the URL to the job."""
    token = webhook_token(settings.signing_secret(), job_id)
    base = settings.public_base_url.rstrip("/")
    return f"{base}/webhooks/{provider}?{urlencode({'job_id': job_id, 'token': token})}"


class InputRefused(ValueError):
    """A link in a job's input that may not be handed to the provider (`field`: where)."""

    def __init__(self, field: str, message: str, value: Any) -> None:
        super().__init__(message)
        self.field, self.message, self.value = field, message, value


async def signed_input(
    session: AsyncSession,
    settings: Settings,
    payload: Mapping[str, Any],
    can_see: Callable[[str], bool],
) -> dict[str, Any]:
    """`payload` with each link to our own outputs made a signed link the provider can open.

    `can_see(owner_id)`: whether the job's owner (or the caller) may use that user's outputs.
    Raises InputRefused for a link to anything else on this API.
    """
    base = settings.public_base_url
    origin = _origin(base)
    cache: dict[str, Job | None] = {}

    async def visible(job_id: str) -> Job | None:
        if job_id not in cache:
            job = await session.get(Job, job_id)
            cache[job_id] = job if job is not None and can_see(job.user_id) else None
        return cache[job_id]

    async def rewrite(field: str, value: Any) -> Any:
        if isinstance(value, list):
            return [await rewrite(field, item) for item in value]
        if isinstance(value, dict):
            return {k: await rewrite(field, v) for k, v in value.items()}
        if not isinstance(value, str) or _origin(value) != origin:
            return value
        named = own_output(value, base)
        if named is None:
            raise InputRefused(
                f"input.{field}",
                "a URL on this API must be an output of one of your jobs "
                f"({base.rstrip('/')}/v1/jobs/<job id>/outputs/<n>)",
                value,
            )
        job_id, index = named
        job = await visible(job_id)
        if job is None or not any(o.get("index") == index for o in job.outputs or []):
            raise InputRefused(
                f"input.{field}", f"job {job_id} has no output {index} you can use", value
            )
        return output_link(
            base, settings.signing_secret(), job_id, index, ttl_seconds=settings.link_ttl_seconds
        )

    return {
        name: value if name in PROMPT_FIELDS else await rewrite(name, value)
        for name, value in payload.items()
    }


def _origin(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return parts.scheme.lower(), parts.netloc.lower()


def media_job_input(
    job: Job, settings: Settings, sent: dict[str, Any] | None = None
) -> MediaJobInput:
    """What the job's workflow starts with. `sent`: the input as the provider gets it
    (`signed_input`), for a job to submit; a job that has a provider job already is adopted
    (its workflow follows that job) and keeps its input as recorded."""
    kind = JobKind(job.kind)
    controls = queue_controls(job, settings)
    return MediaJobInput(
        job_id=job.id,
        user_id=job.user_id,
        kind=kind,
        provider=job.provider,
        model=job.model,
        input=job.input if sent is None else sent,
        webhook_url=webhook_url(settings, job.provider, job.id),
        poll=poll_policy(settings, kind),
        project_id=job.project_id,
        node_id=job.node_id,
        adopt_provider_job_id=job.provider_job_id,
        **controls,
    )


def reserved_slots(max_active: int, share: float) -> int:
    """Slots of a provider capped at `max_active` kept for users with none there (rounded up),
    leaving at least one for a user already there."""
    if max_active <= 1 or share <= 0:
        return 0
    return min(max_active - 1, math.ceil(max_active * share))


def queue_controls(job: Job, settings: Settings) -> dict[str, Any]:
    """The job's priority, deadline and admission limits (MediaJobInput fields): priority and
    deadline as the job was created with them (kept in its metadata), else the defaults."""
    meta = job.metadata_ or {}
    priority = meta.get(PRIORITY_KEY, PRIORITY_DEFAULT)
    deadline = meta.get(DEADLINE_KEY)
    if deadline is None:
        deadline = settings.default_deadline_seconds_by_kind.get(job.kind)
    controls: dict[str, Any] = {
        "priority": int(priority),
        "deadline_seconds": float(deadline) if deadline else None,
    }
    if settings.admission_enabled:
        max_active = settings.provider_max_active.get(job.provider, 0)
        controls["admission"] = AdmissionLimits(
            max_active=max_active,
            max_per_user=settings.max_active_jobs_per_user,
            reserve=reserved_slots(max_active, settings.provider_fair_reserve),
        )
        controls["provider_task_queue"] = settings.provider_task_queue(job.provider)
    return controls


async def start_new(
    client: Client, settings: Settings, job: Job, sent: dict[str, Any]
) -> StartResult:
    """Start the workflow of a job that never had one (refused if it ever had one, so a start
    retried after a crash can't run a second), resolving a lost answer."""
    job_input = media_job_input(job, settings, sent)
    return await start_resolved(
        client,
        media_job_workflow_id(job.id),
        lambda: start_job_workflow(client, settings, job_input, first=True),
    )


async def start_adopting(client: Client, settings: Settings, job: Job) -> StartResult:
    """Start a workflow that follows the job's provider job to the end (an adoption, or a job
    whose workflow is gone: the closed workflow's id is used again)."""
    assert job.provider_job_id is not None
    job_input = media_job_input(job, settings)
    return await start_resolved(
        client,
        media_job_workflow_id(job.id),
        lambda: start_job_workflow(client, settings, job_input),
        reuses_id=True,
    )


async def start_job_workflow(
    client: Client, settings: Settings, job: MediaJobInput, *, first: bool = False
) -> None:
    """Start the job's workflow (`media-job-{id}`; a closed one's id may be used again).

    `first`: only if the job never had a workflow (else WorkflowAlreadyStartedError), so a
    start retried after a crash can't run a second one.
    """
    if not job.storage_task_queue:
        job = dataclasses.replace(job, storage_task_queue=settings.storage_task_queue)
    await client.start_workflow(
        MEDIA_JOB_WORKFLOW,
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
        priority=task_priority(job),
        **start_options(job),
    )


# A job's priority (0 interactive … 2 batch) as Temporal's priority key (1 first … 5 last;
# unset is 3, what sync runs and the house's own workflows get): a default job shares their level.
_PRIORITY_KEY_OFFSET = 2
_MAX_FAIRNESS_KEY_BYTES = 64


def task_priority(job: MediaJobInput) -> Priority:
    """Where the job's tasks (its workflow's and, inherited, its activities') stand in
    Temporal's task queues: by its priority, then fair between users (one fairness key per
    user: a user's flood of new jobs is dispatched in turn with everybody else's, not ahead of
    them; the server needs `matching.enableFairness`, which devstack and compose set).
    Admission decides who goes to the provider; this decides whose workflow runs first."""
    key = job.user_id
    if len(key.encode()) > _MAX_FAIRNESS_KEY_BYTES:
        key = hashlib.sha256(key.encode()).hexdigest()[:_MAX_FAIRNESS_KEY_BYTES]
    return Priority(priority_key=_PRIORITY_KEY_OFFSET + job.priority, fairness_key=key)


def start_options(job: MediaJobInput) -> dict[str, Any]:
    """Readable summary and details for the web UI's list and workflow pages."""
    prompt = str(job.input.get("prompt", ""))[:80]
    return {
        "static_summary": f"{job.kind.value} · {job.model} · user {job.user_id}"[:200],
        "static_details": (
            f"**{job.kind.value}** job `{job.job_id}` for user `{job.user_id}`  \n"
            f"provider **{job.provider}**, model `{job.model}`"
            + (f"  \nprompt: {prompt}" if prompt else "")
        ),
    }
