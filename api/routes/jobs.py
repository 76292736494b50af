"""Media jobs: start, read, list (the gallery feed), cancel, and read stored outputs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from api.auth import Caller
from api.deps import CurrentCaller, SessionDep, SettingsDep, StorageDep, TemporalDep
from api.pagination import decode_cursor, encode_cursor
from api.query_auth import HeaderOrQueryCaller
from api.routes.metrics import MetricsDep
from api.schemas import CancelRequest, JobCreate, JobPublic, JobsPublic, OutputPublic
from core.contracts import (
    TERMINAL_JOB_STATUSES,
    JobKind,
    JobStatus,
    MediaJobInput,
    media_job_workflow_id,
)
from core.events import append_event, job_payload, user_topic
from core.job_start import poll_policy, start_job_workflow, webhook_url
from core.job_store import advance_job, get_job, list_jobs
from core.models import Job, Project
from core.settings import Settings
from providers.registry import job_request_error
from storage.base import Storage
from workflows.media_job import MediaJobWorkflow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# Job ids are ours (hex uuids), but arrive in URLs: anything else is refused before any lookup.
JobId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="the job's id")
]


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
        outputs=[output_public(job.id, o, base) for o in job.outputs],
        output_data=job.output_data,
        storage_provider=job.storage_provider,
        storage_bucket=job.storage_bucket,
        storage_context=job.storage_context,
        storage_keys=job.storage_keys or [],
        operation_type=job.operation_type,
        recovery_state=job.recovery_state,
        recovery_reason=job.recovery_reason,
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


def output_public(job_id: str, output: dict[str, Any], base: str) -> OutputPublic:
    """One stored output; records written before thumbnails existed lack the newer fields."""
    url = f"{base}/v1/jobs/{job_id}/outputs/{output['index']}"
    thumbnail = output.get("thumbnail")
    return OutputPublic(
        index=output["index"],
        url=url,
        thumbnail_url=f"{url}/thumbnail" if thumbnail else None,
        key=output["key"],
        thumbnail_key=thumbnail["key"] if thumbnail else None,
        content_type=output["content_type"],
        bytes=output["bytes"],
        sha256=output["sha256"],
        width=output.get("width"),
        height=output.get("height"),
        metadata=output.get("metadata") or {},
    )


async def visible_job(session: SessionDep, caller: Caller, job_id: str) -> Job:
    job = await get_job(session, job_id)
    if job is None or not caller.can_see(job.user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


async def check_project_node(
    session: AsyncSession, caller: Caller, project_id: str, node_id: str | None
) -> None:
    """422 unless the project is the caller's and has the node (if any) the job fills in."""
    project = await session.get(Project, project_id)
    if project is None or not caller.can_see(project.user_id):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"project_id: no project {project_id!r}"
        )
    if node_id is None:
        return  # a job of the project that fills in no node
    nodes = (project.content or {}).get("nodes", [])
    if not any(isinstance(n, dict) and n.get("id") == node_id for n in nodes):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"node_id: project {project_id!r} has no node {node_id!r}",
        )


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def create_job(
    body: JobCreate,
    caller: CurrentCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
) -> JobPublic:
    """Start a job; it runs in the background. Poll GET /v1/jobs/{id} or cancel it."""
    provider = body.provider or settings.default_provider
    model = body.model or settings.default_model(body.kind.value, provider)
    problem = job_request_error(provider, body.kind, model, body.input)
    if problem is not None:
        # The shape of the schema's own 422s: the provider is only known here.
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body",), "msg": problem, "input": body.input}]
        )
    assert model is not None  # job_request_error refuses a kind the provider has no model for
    job_id = uuid.uuid4().hex
    job = Job(
        id=job_id,
        user_id=caller.user_id,
        kind=body.kind.value,
        provider=provider,
        model=model,
        input=body.input,
        status=JobStatus.QUEUED.value,
        project_id=body.project_id,
        node_id=body.node_id,
    )
    if body.node_id is not None and body.project_id is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "node_id: needs the project_id it belongs to"
        )
    if body.project_id is not None:
        await check_project_node(session, caller, body.project_id, body.node_id)
        # End that read: a transaction that reads and then writes can't wait its turn on
        # SQLite (it fails at once with "database is locked" if another write came between).
        await session.rollback()
    # The row first, so the job is listed (and streamed) from the moment this request returns.
    session.add(job)
    await session.flush()
    await append_event(session, user_topic(job.user_id), f"job.{job.status}", job_payload(job))
    await session.commit()
    try:
        await start_job_workflow(
            temporal,
            settings,
            MediaJobInput(
                job_id=job_id,
                user_id=caller.user_id,
                kind=body.kind,
                provider=provider,
                model=model,
                input=body.input,
                webhook_url=webhook_url(settings, provider, job_id),
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
    job_id: JobId, caller: CurrentCaller, session: SessionDep, settings: SettingsDep
) -> JobPublic:
    """One job with its status, outputs and timings."""
    return job_public(await visible_job(session, caller, job_id), settings)


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def cancel_job(
    job_id: JobId,
    caller: CurrentCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    metrics: MetricsDep,
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
        metrics.signal("MediaJobWorkflow", "cancel", sent=False)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"could not reach the job: {exc.message}"
        ) from exc
    metrics.signal("MediaJobWorkflow", "cancel", sent=True)
    return job_public(job, settings)


@router.get("/{job_id}/outputs/{index}", response_model=None)
async def read_output(
    job_id: JobId,
    index: int,
    request: Request,
    caller: HeaderOrQueryCaller,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> Any:
    """The stored file (a redirect to a presigned URL on S3); the key may be `?access_token=`."""
    output = await visible_output(session, caller, job_id, index)
    return await serve_object(
        request, storage, settings, output["key"], output["content_type"], output["sha256"]
    )


@router.get("/{job_id}/outputs/{index}/thumbnail", response_model=None)
async def read_thumbnail(
    job_id: JobId,
    index: int,
    request: Request,
    caller: HeaderOrQueryCaller,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> Any:
    """The output's WebP thumbnail (images only); the key may be `?access_token=`."""
    output = await visible_output(session, caller, job_id, index)
    thumbnail = output.get("thumbnail")
    if not thumbnail:
        reason = (output.get("metadata") or {}).get("thumbnail_error") or (
            output.get("metadata") or {}
        ).get("thumbnail_skipped", "none was made")
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"output {index} has no thumbnail: {reason}")
    # A thumbnail is a pure function of its output's bytes: the output's checksum tags it too.
    return await serve_object(
        request, storage, settings, thumbnail["key"], thumbnail["content_type"], output["sha256"]
    )


async def visible_output(
    session: AsyncSession, caller: Caller, job_id: str, index: int
) -> dict[str, Any]:
    job = await visible_job(session, caller, job_id)
    output: dict[str, Any] | None = next((o for o in job.outputs if o["index"] == index), None)
    if output is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no output {index}")
    return output


async def serve_object(
    request: Request,
    storage: Storage,
    settings: Settings,
    key: str,
    content_type: str,
    sha256: str,
) -> Response:
    """Redirect to the object's direct URL (S3), or stream it from storage (local)."""
    direct = await storage.presigned_url(key, settings.s3_presign_seconds)
    if direct:
        return RedirectResponse(direct, status.HTTP_307_TEMPORARY_REDIRECT)
    headers = {
        "ETag": f'"{sha256}"',
        # Private: it is served only with the owner's key. Never sniffed into HTML by a browser.
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    stream = storage.read(key)
    try:
        first = await anext(stream, b"")
    except FileNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "stored file is missing") from None

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in stream:
            yield chunk

    return StreamingResponse(body(), media_type=content_type, headers=headers)
