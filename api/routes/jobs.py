"""Media jobs: start, read, list (the gallery feed), cancel, and read stored outputs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import RedirectResponse, StreamingResponse
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from api.auth import Caller
from api.deps import CurrentCaller, SessionDep, SettingsDep, StorageDep, TemporalDep
from api.pagination import decode_cursor, encode_cursor
from api.schemas import CancelRequest, JobCreate, JobPublic, JobsPublic, OutputPublic
from core.contracts import (
    SA_KIND,
    SA_PROVIDER,
    SA_STATUS,
    SA_USER,
    TERMINAL_JOB_STATUSES,
    JobKind,
    JobStatus,
    MediaJobInput,
    PollPolicy,
    media_job_workflow_id,
)
from core.job_store import advance_job, get_job, list_jobs
from core.models import Job
from core.settings import Settings
from workflows.media_job import MediaJobWorkflow, start_options

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_public(job: Job, settings: Settings) -> JobPublic:
    base = settings.public_base_url.rstrip("/")
    workflow_id = media_job_workflow_id(job.id)
    ui = settings.temporal_ui_url.rstrip("/")
    return JobPublic(
        id=job.id,
        kind=JobKind(job.kind),
        status=JobStatus(job.status),
        user_id=job.user_id,
        provider=job.provider,
        provider_status=job.provider_status,
        provider_job_id=job.provider_job_id,
        model=job.model,
        input=job.input,
        project_id=job.project_id,
        node_id=job.node_id,
        error=job.error,
        outputs=[
            OutputPublic(
                index=o["index"],
                url=f"{base}/v1/jobs/{job.id}/outputs/{o['index']}",
                key=o["key"],
                content_type=o["content_type"],
                bytes=o["bytes"],
                sha256=o["sha256"],
            )
            for o in job.outputs
        ],
        output_data=job.output_data,
        storage_provider=job.storage_provider,
        storage_bucket=job.storage_bucket,
        storage_context=job.storage_context,
        webhook_count=job.webhook_count,
        poll_count=job.poll_count,
        created_at=job.created_at,
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        updated_at=job.updated_at,
        workflow_id=workflow_id,
        workflow_url=(
            f"{ui}/namespaces/{quote(settings.temporal_namespace)}/workflows/{workflow_id}"
            if ui
            else None
        ),
    )


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


async def start_job_workflow(client: Client, settings: Settings, job: MediaJobInput) -> None:
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


async def visible_job(session: SessionDep, caller: Caller, job_id: str) -> Job:
    job = await get_job(session, job_id)
    if job is None or not caller.can_see(job.user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def create_job(
    body: JobCreate,
    caller: CurrentCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> JobPublic:
    """Start a job; it runs in the background. Poll GET /v1/jobs/{id} or cancel it."""
    job_id = uuid.uuid4().hex
    model = body.model or settings.default_model(body.kind.value)
    job = Job(
        id=job_id,
        user_id=caller.user_id,
        kind=body.kind.value,
        provider=body.provider,
        model=model,
        input=body.input,
        status=JobStatus.QUEUED.value,
        project_id=body.project_id,
        node_id=body.node_id,
    )
    # The row first, so the job is listed from the moment this request returns.
    session.add(job)
    await session.commit()
    webhook_url = f"{settings.public_base_url.rstrip('/')}/webhooks/{body.provider}?job_id={job_id}"
    try:
        await start_job_workflow(
            temporal,
            settings,
            MediaJobInput(
                job_id=job_id,
                user_id=caller.user_id,
                kind=body.kind,
                provider=body.provider,
                model=model,
                input=body.input,
                webhook_url=webhook_url,
                webhook_events=settings.replicate_webhook_events,
                poll=poll_policy(settings, body.kind),
                project_id=body.project_id,
                node_id=body.node_id,
            ),
        )
    except RPCError as exc:
        await advance_job(
            session, job_id, JobStatus.FAILED, error=f"could not start the job: {exc.message}"
        )
        await session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the orchestrator is unavailable; try again"
        ) from exc
    return job_public(job, settings)


@router.get("", response_model=JobsPublic)
async def list_my_jobs(
    caller: CurrentCaller,
    session: SessionDep,
    settings: SettingsDep,
    kind: JobKind | None = None,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    project_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> JobsPublic:
    """Your jobs, newest first (admins: everyone's), filtered and paged by cursor."""
    rows = await list_jobs(
        session,
        user_id=None if caller.is_admin else caller.user_id,
        kind=kind.value if kind else None,
        status=status_.value if status_ else None,
        project_id=project_id,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = list(rows[:limit])
    return JobsPublic(
        items=[job_public(job, settings) for job in page],
        next_cursor=(
            encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
        ),
    )


@router.get("/{job_id}", response_model=JobPublic)
async def read_job(
    job_id: str, caller: CurrentCaller, session: SessionDep, settings: SettingsDep
) -> JobPublic:
    """One job with its status, outputs and timings."""
    return job_public(await visible_job(session, caller, job_id), settings)


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def cancel_job(
    job_id: str,
    caller: CurrentCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    body: CancelRequest | None = None,
) -> JobPublic:
    """Ask a job to stop; it reaches the provider and ends `canceled`."""
    job = await visible_job(session, caller, job_id)
    if JobStatus(job.status) in TERMINAL_JOB_STATUSES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} is already {job.status}")
    reason = body.reason if body else "canceled by user"
    try:
        await temporal.get_workflow_handle(media_job_workflow_id(job_id)).signal(
            MediaJobWorkflow.cancel, reason
        )
    except RPCError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"could not reach the job: {exc.message}"
        ) from exc
    return job_public(job, settings)


@router.get("/{job_id}/outputs/{index}", response_model=None)
async def read_output(
    job_id: str,
    index: int,
    caller: CurrentCaller,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> Any:
    """The stored file (a redirect to a presigned URL on S3)."""
    job = await visible_job(session, caller, job_id)
    output = next((o for o in job.outputs if o["index"] == index), None)
    if output is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no output {index}")
    presigned = await storage.presigned_url(output["key"], settings.s3_presign_seconds)
    if presigned:
        return RedirectResponse(presigned, status.HTTP_307_TEMPORARY_REDIRECT)
    stream = storage.read(output["key"])
    try:
        first = await anext(stream)
    except (FileNotFoundError, StopAsyncIteration):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "stored file is missing") from None

    async def body() -> Any:
        yield first
        async for chunk in stream:
            yield chunk

    return StreamingResponse(body(), media_type=output["content_type"])
