"""Media jobs: start, read, list (the gallery feed), cancel, and read stored outputs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.auth import Caller
from api.deps import (
    BearerCredentials,
    CurrentCaller,
    SessionDep,
    SettingsDep,
    StorageDep,
    TemporalDep,
)
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import Claim, IdempotencyKeyHeader
from api.job_inputs import check_training, invalid, provider_input
from api.link_auth import link_or_key
from api.pagination import decode_cursor, encode_cursor
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
from core.links import output_link, output_scope
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
LinkToken = Annotated[
    str | None,
    Query(description="the signed token of this file's link (`url` / `thumbnail_url` of a job)"),
]


def job_public(job: Job, settings: Settings) -> JobPublic:
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
        outputs=[output_public(job.id, o, settings) for o in job.outputs],
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


def output_public(job_id: str, output: dict[str, Any], settings: Settings) -> OutputPublic:
    """One stored output, with signed links; records written before thumbnails existed lack
    the newer fields."""
    thumbnail = output.get("thumbnail")

    def link(thumbnail: bool) -> str:
        return output_link(
            settings.public_base_url,
            settings.signing_secret(),
            job_id,
            output["index"],
            ttl_seconds=settings.link_ttl_seconds,
            thumbnail=thumbnail,
        )

    return OutputPublic(
        index=output["index"],
        url=link(False),
        thumbnail_url=link(True) if thumbnail else None,
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
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    """Start a job; it runs in the background. Poll GET /v1/jobs/{id} or cancel it.

    With an `Idempotency-Key`, a retry answers with the job the first request made.
    """
    claim = Claim.of(
        idempotency_key, user_id=caller.user_id, scope="jobs", body=body,
        ttl_hours=settings.idempotency_ttl_hours,
    )  # fmt: skip
    if claim is not None and (made := await claim.resource(session)) is not None:
        return await job_made_before(session, temporal, settings, caller, response, made)
    provider = body.provider or settings.default_provider
    model = body.model or settings.default_model(body.kind.value, provider)
    problem = job_request_error(provider, body.kind, model, body.input)
    if problem is not None:
        # The shape of the schema's own 422s: the provider is only known here.
        raise invalid("", problem, body.input)
    assert model is not None  # job_request_error refuses a kind the provider has no model for
    check_training(caller, settings, provider, body.kind, body.input)
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
    sent = await provider_input(session, caller, settings, body.input)
    # End those reads: a transaction that reads and then writes can't wait its turn on
    # SQLite (it fails at once with "database is locked" if another write came between).
    await session.rollback()
    # The row first, so the job is listed (and streamed) from the moment this request returns.
    session.add(job)
    try:
        if claim is not None:
            await claim.record(session, job_id)
        await session.flush()
        await append_event(session, user_topic(job.user_id), f"job.{job.status}", job_payload(job))
        await session.commit()
    except IntegrityError:
        # Only the key's row can collide: a request with the same key got there first.
        await session.rollback()
        made = await claim.resource(session) if claim is not None else None
        if made is None:
            raise
        return await job_made_before(session, temporal, settings, caller, response, made)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    try:
        await start_job_workflow(
            temporal, settings, workflow_input(job, settings, sent), first=True
        )
    except WorkflowAlreadyStartedError:
        pass  # a retry with the same key started it meanwhile
    except RPCError as exc:
        if claim is not None:
            # Left queued: a retry with the key starts it.
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the orchestrator is unavailable; retry with the same {IDEMPOTENCY_HEADER}",
            ) from exc
        await advance_job(
            session, job_id, JobStatus.FAILED, error=f"could not start the job: {exc.message}"
        )
        await session.commit()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the orchestrator is unavailable; try again"
        ) from exc
    return job_public(job, settings)


def workflow_input(job: Job, settings: Settings, sent: dict[str, Any]) -> MediaJobInput:
    """What the job's workflow starts with; `sent` is the input as the provider gets it."""
    kind = JobKind(job.kind)
    return MediaJobInput(
        job_id=job.id,
        user_id=job.user_id,
        kind=kind,
        provider=job.provider,
        model=job.model,
        input=sent,
        webhook_url=webhook_url(settings, job.provider, job.id),
        webhook_events=settings.replicate_webhook_events,
        poll=poll_policy(settings, kind),
        project_id=job.project_id,
        node_id=job.node_id,
    )


async def job_made_before(
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    caller: Caller,
    response: Response,
    job_id: str,
) -> JobPublic:
    """The job an Idempotency-Key made, as it is now; started if its first request could not
    start it (the API died or Temporal was down between the commit and the start)."""
    job = await get_job(session, job_id)
    if job is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"code": "idempotency_key_reused",
             "message": f"the job this {IDEMPOTENCY_HEADER} made is gone; send a new key"},
        )  # fmt: skip
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if job.status == JobStatus.QUEUED.value and job.provider_job_id is None:
        sent = await provider_input(session, caller, settings, job.input)
        try:
            # Refused when the job ever had a workflow: a start can't make a second one.
            await start_job_workflow(
                temporal, settings, workflow_input(job, settings, sent), first=True
            )
        except WorkflowAlreadyStartedError:
            pass
        except RPCError as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the orchestrator is unavailable; retry with the same {IDEMPOTENCY_HEADER}",
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
    response: Response,
    body: CancelRequest | None = None,
) -> JobPublic:
    """Ask a job to stop; it reaches the provider and ends `canceled`."""
    job = await visible_job(session, caller, job_id)
    response.headers["Location"] = f"/v1/jobs/{job_id}"
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
    credentials: BearerCredentials,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    token: LinkToken = None,
) -> Any:
    """The stored file (a redirect to a presigned URL on S3), by the job's auth or its link."""
    caller = await link_or_key(request, credentials, token, output_scope(job_id, index))
    output = await visible_output(session, caller, job_id, index)
    return await serve_object(
        request, storage, settings, output["key"], output["content_type"], output["sha256"]
    )


@router.get("/{job_id}/outputs/{index}/thumbnail", response_model=None)
async def read_thumbnail(
    job_id: JobId,
    index: int,
    request: Request,
    credentials: BearerCredentials,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    token: LinkToken = None,
) -> Any:
    """The output's WebP thumbnail (images only), by the job's auth or its link."""
    scope = output_scope(job_id, index, thumbnail=True)
    caller = await link_or_key(request, credentials, token, scope)
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
    session: AsyncSession, caller: Caller | None, job_id: str, index: int
) -> dict[str, Any]:
    """Output `index` of the job; `caller` None: a link token for it was checked already."""
    job = await get_job(session, job_id)
    if job is None or (caller is not None and not caller.can_see(job.user_id)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
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
        # Private: it is served only with the owner's key or link. Never sniffed into HTML.
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
