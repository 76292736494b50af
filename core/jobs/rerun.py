"""Rerunning a job: a new job with the old one's kind, provider, model and input (some input
fields replaced), linked to it by `rerun_of`.

The new input is checked as a new job's is (the provider's input and model rules, the checks
that depend on who asks, links to our own outputs), so an edit can't slip past what
`POST /v1/jobs` refuses. The new job belongs to the old job's owner (an admin rerunning a
user's job reruns it for them) and keeps its project, but fills in no project node: the old
job's result stays on the node.

A bulk rerun names its new jobs (`batch_rerun_id`): the same batch and old job always make the
same new job id, so an activity retried after a crash finds the job it made instead of making a
second.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from core.contracts import JobKind, JobStatus
from core.events import append_event, job_payload, user_topic
from core.jobs.start import InputRefused, signed_input, start_new
from core.jobs.store import get_job
from core.models import Job
from core.settings import Settings
from core.starts import StartResult
from providers import registry
from providers.spec import CallerCheck

# Names the new job of each (batch, old job): uuid5 in a namespace of our own.
_BATCH_RERUN_NAMESPACE = uuid.UUID("6f1c2a0e-3b7d-5c7e-9a55-2d0c1b4e8f10")


def batch_rerun_id(batch_id: str, job_id: str) -> str:
    """The id of the job that batch `batch_id` makes when it reruns `job_id`."""
    return uuid.uuid5(_BATCH_RERUN_NAMESPACE, f"{batch_id}/{job_id}").hex


class RerunRefused(ValueError):
    """The rerun's input is not one a new job may have (`field`: where, as in a 422)."""

    def __init__(self, field: str, message: str, value: Any = None) -> None:
        super().__init__(message)
        self.field, self.message, self.value = field, message, value


def merged_input(old: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The old input with `overrides`' fields replaced (a field set to null is removed)."""
    merged = dict(old)
    for name, value in (overrides or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def caller_problem(
    settings: Settings,
    provider: str,
    kind: JobKind,
    payload: Mapping[str, Any],
    *,
    user_id: str,
    is_admin: bool,
) -> tuple[str, str] | None:
    """`(field, problem)` when the provider refuses this input from this user (its spec's
    `caller_error`), else None. The provider must be known."""
    spec = registry.get(provider)
    if spec.caller_error is None:
        return None
    return spec.caller_error(spec.config(settings), CallerCheck(user_id, is_admin), kind, payload)


async def rerun_job(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    old: Job,
    overrides: Mapping[str, Any] | None,
    *,
    is_admin: bool,
    can_see: Callable[[str], bool],
    new_id: str | None = None,
    also_record: Callable[[AsyncSession, str], Awaitable[None]] | None = None,
) -> tuple[Job, StartResult | None]:
    """Record and start the rerun of `old`: the new job, and how its start went (None: a job
    of that `new_id` was made before and had started already).

    `is_admin`, `can_see`: the rights of whoever asks (checks of the input, links to outputs).
    `also_record(session, new job id)` writes in the new job's transaction (an
    Idempotency-Key's row); its IntegrityError is raised (after a rollback).
    Raises RerunRefused (nothing recorded) for an input a new job may not have.
    """
    kind = JobKind(old.kind)
    payload = merged_input(old.input or {}, overrides)
    problem = registry.job_request_error(old.provider, kind, old.model, payload)
    if problem is not None:
        raise RerunRefused("input", problem, payload)
    found = caller_problem(
        settings, old.provider, kind, payload, user_id=old.user_id, is_admin=is_admin
    )
    if found is not None:
        field, message = found
        raise RerunRefused(field, message, payload.get(field.removeprefix("input.")))
    try:
        sent = await signed_input(session, settings, payload, can_see)
    except InputRefused as exc:
        raise RerunRefused(exc.field, exc.message, exc.value) from exc
    old_id = old.id
    job = Job(
        id=new_id or uuid.uuid4().hex,
        user_id=old.user_id,
        kind=old.kind,
        provider=old.provider,
        model=old.model,
        input=payload,
        status=JobStatus.QUEUED.value,
        project_id=old.project_id,
        rerun_of=old_id,
    )
    # End the reads before writing (SQLite: a read-then-write transaction can't wait its turn).
    await session.rollback()
    if new_id is not None and (made := await get_job(session, new_id)) is not None:
        return await _made_before(temporal, settings, made, sent)
    session.add(job)
    try:
        if also_record is not None:
            await also_record(session, job.id)
        await session.flush()
        await append_event(session, user_topic(job.user_id), f"job.{job.status}", job_payload(job))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        made = await get_job(session, job.id) if new_id is not None else None
        if made is None:
            raise
        return await _made_before(temporal, settings, made, sent)
    return job, await start_new(temporal, settings, job, sent)


async def _made_before(
    temporal: Client, settings: Settings, job: Job, sent: dict[str, Any]
) -> tuple[Job, StartResult | None]:
    """A rerun made before (a retried batch chunk): started if it never got going."""
    if job.status == JobStatus.QUEUED.value and job.provider_job_id is None:
        # Refused when the job ever had a workflow: a start can't make a second one.
        return job, await start_new(temporal, settings, job, sent)
    return job, None
