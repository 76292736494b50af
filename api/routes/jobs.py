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
from temporalio.service import RPCError, RPCStatusCode

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
from api.job_inputs import check_for_caller, invalid, provider_input
from api.link_auth import link_or_key
from api.pagination import decode_cursor, encode_cursor
from api.routes.metrics import MetricsDep
from api.schemas import CancelRequest, JobCreate, JobPublic, JobsPublic, OutputPublic
from core.contracts import (
    TERMINAL_JOB_STATUSES,
    JobKind,
    JobStatus,
    ProviderPhase,
    media_job_workflow_id,
)
from core.events import append_event, job_payload, user_topic
from core.job_start import start_job_workflow, workflow_input
from core.job_store import advance_job, get_job, list_jobs
from core.links import output_link, output_scope
from core.models import Job, Project
from core.settings import Settings
from core.starts import (
    RETRY_AFTER_SECONDS,
    StartOutcome,
    StartResult,
    is_temporal_error,
    start_resolved,
)
from providers import registry
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
        provider_phase=ProviderPhase(job.provider_phase) if job.provider_phase else None,
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
    model = body.model or registry.default_model(provider, body.kind)
    problem = registry.job_request_error(provider, body.kind, model, body.input)
    if problem is not None:
        # The shape of the schema's own 422s: the provider is only known here.
        raise invalid("", problem, body.input)
    assert model is not None  # job_request_error refuses a kind the provider has no model for
    check_for_caller(caller, settings, provider, body.kind, body.input)
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
    started = await start_job(temporal, settings, job, sent)
    if started.runs:
        return job_public(job, settings)
    if claim is not None:
        # Left queued: a retry with the key starts it, else the recovery sweep does (or fails
        # it) once it is RECOVERY_MIN_AGE_MINUTES old.
        raise unavailable(
            f"the orchestrator is unavailable ({started.error}); job {job_id} is queued: "
            f"retry with the same {IDEMPOTENCY_HEADER}",
            job_id,
        )
    if started.outcome == StartOutcome.UNKNOWN:
        # It may run: never failed behind its back. The sweep starts it or finds it running.
        raise unavailable(
            f"the orchestrator did not answer ({started.error}); job {job_id} may have "
            "started: it is started or failed within minutes; GET it to follow it, and send an "
            f"{IDEMPOTENCY_HEADER} to retry creates safely",
            job_id,
        )
    await advance_job(
        session, job_id, JobStatus.FAILED, error=f"could not start the job: {started.error}"
    )
    await session.commit()
    if not started.unavailable:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"the orchestrator refused the job: {started.error}"
        )
    raise unavailable(f"the orchestrator is unavailable ({started.error}); try again", job_id)


async def start_job(
    temporal: Client, settings: Settings, job: Job, sent: dict[str, Any]
) -> StartResult:
    """Start a new job's workflow (refused if it ever had one), resolving a lost answer."""
    job_input = workflow_input(job, settings, sent)
    return await start_resolved(
        temporal,
        media_job_workflow_id(job.id),
        lambda: start_job_workflow(temporal, settings, job_input, first=True),
    )


def unavailable(message: str, job_id: str) -> HTTPException:
    """503 with Retry-After, naming the job that was recorded."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        {"code": "orchestrator_unavailable", "message": message, "job_id": job_id},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
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
        # Refused when the job ever had a workflow: a start can't make a second one.
        started = await start_job(temporal, settings, job, sent)
        if not started.runs:
            raise unavailable(
                f"the orchestrator is unavailable ({started.error}); job {job.id} is queued: "
                f"retry with the same {IDEMPOTENCY_HEADER}",
                job.id,
            )
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
    except Exception as exc:
        if not is_temporal_error(exc):
            raise
        metrics.signal("MediaJobWorkflow", "cancel", sent=False)
        if not (isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND):
            raise unavailable(f"could not reach the job: {exc}", job_id) from exc
        return await cancel_without_workflow(session, settings, job, reason)
    metrics.signal("MediaJobWorkflow", "cancel", sent=True)
    return job_public(job, settings)


async def cancel_without_workflow(
    session: AsyncSession, settings: Settings, job: Job, reason: str
) -> JobPublic:
    """Cancel a job that has no running workflow (its start failed or was lost).

    A queued job never reached a provider: it is canceled in our records (forward-only). One
    that did is stranded: the recovery sweep adopts it, and then it can be cancelled.
    """
    if job.status != JobStatus.QUEUED.value or job.provider_job_id is not None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            {"code": "job_stranded",
             "message": f"job {job.id} has no running workflow; the recovery sweep adopts it "
                        "within minutes: cancel it again then", "job_id": job.id},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )  # fmt: skip
    job_id = job.id
    await session.rollback()  # end the reads before writing (SQLite)
    await advance_job(session, job_id, JobStatus.CANCELED, error=reason)
    await session.commit()
    refreshed = await get_job(session, job_id)
    assert refreshed is not None
    if refreshed.status != JobStatus.CANCELED.value:
        # Its workflow started meanwhile and moved it on: the cancel reaches it next time.
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job {job_id} is {refreshed.status} now; cancel it again"
        )
    return job_public(refreshed, settings)


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
