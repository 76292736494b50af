"""Media jobs: start, read, list (the gallery feed), cancel, adopt, and read stored outputs."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.auth import Caller
from api.deps import (
    AdminCaller,
    BearerCredentials,
    CurrentCaller,
    KeyRingDep,
    MetricsDep,
    ProvidersDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    TemporalDep,
)
from api.errors import Error, orchestrator_unavailable
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import Claim, IdempotencyKeyHeader
from api.job_inputs import check_for_caller, invalid, provider_input
from api.link_auth import link_or_key
from api.pagination import decode_cursor, encode_cursor
from api.schemas.job_batches import (
    MAX_FAILURES_SHOWN,
    BatchAccepted,
    BatchPublic,
    BulkCancelRequest,
    BulkJobsRequest,
    BulkRerunRequest,
    batch_public,
)
from api.schemas.jobs import (
    AdoptRequest,
    CancelRequest,
    JobCreate,
    JobPublic,
    JobsPublic,
    RerunKeyed,
    RerunRequest,
    job_public,
)
from core.batch_contracts import BatchAction
from core.contracts import (
    CANCEL_SIGNAL,
    MEDIA_JOB_WORKFLOW,
    TERMINAL_JOB_STATUSES,
    JobKind,
    JobStatus,
    ProviderRef,
)
from core.events import append_event, batch_topic, job_payload, user_topic
from core.ids import JOB_ID_PATTERN
from core.jobs import cancel
from core.jobs.bulk import (
    Selection,
    failures,
    finish_batch,
    get_batch,
    match_jobs,
    record_batch,
    start_batch,
)
from core.jobs.cancel import Cancelled
from core.jobs.queue import queue_position
from core.jobs.rerun import RerunRefused, rerun_job
from core.jobs.start import controls_metadata, start_adopting, start_new
from core.jobs.store import advance_job, find_tracked, get_job, list_jobs, record_adopted
from core.links import output_scope
from core.models import Job, Project
from core.recovery import legacy_kind
from core.settings import Settings
from core.starts import RETRY_AFTER_SECONDS, StartOutcome, StartResult, Unreachable
from core.usage.store import day_start, spent_on
from providers import registry
from providers.base import ProviderError, ProviderRateLimited, ProviderRejected
from storage.base import Storage

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
# Adoption makes a job, but is an admin's recovery tool: it is documented with recovery.
adopt_router = APIRouter(prefix="/v1/jobs", tags=["recovery"])

# Job ids are ours (hex uuids), but arrive in URLs: anything else is refused before any lookup.
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the job's id")]
LinkToken = Annotated[
    str | None,
    Query(description="the signed token of this file's link (`url` / `thumbnail_url` of a job)"),
]


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


async def check_daily_spend(session: AsyncSession, settings: Settings, caller: Caller) -> None:
    """402 once the caller's jobs that succeeded today (UTC) cost MAX_DAILY_SPEND_PER_USER.

    402 Payment Required, not 429: a 429 tells a client to retry after a while and many retry
    it on their own (Retry-After), but this refusal lasts until the day ends or the cap is
    raised: a budget reached, not a request rate. Jobs still running are not counted (their
    cost is known only when they succeed), so the day's spend can end a little past the cap.
    """
    cap = settings.max_daily_spend_per_user
    if cap is None:
        return
    today = datetime.now(UTC).date()
    spent = await spent_on(session, caller.user_id, today)
    if spent < cap:
        return
    resets_at = day_start(today + timedelta(days=1))
    raise HTTPException(
        status.HTTP_402_PAYMENT_REQUIRED,
        {
            "code": "daily_spend_cap_reached",
            "message": (
                f"daily spend cap reached: your jobs cost ${spent:.2f} today (UTC), the cap "
                f"(MAX_DAILY_SPEND_PER_USER) is ${cap:.2f}; new jobs are accepted again at "
                f"{resets_at.isoformat()}"
            ),
            "spent_usd": spent,
            "cap_usd": cap,
            "resets_at": resets_at.isoformat(),
        },
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={
        402: {
            "model": Error,
            "description": "`daily_spend_cap_reached`: MAX_DAILY_SPEND_PER_USER reached today",
        }
    },
)
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
    await check_daily_spend(session, settings, caller)
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
        metadata_=controls_metadata(body.priority, body.deadline_seconds),
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
    started = await start_new(temporal, settings, job, sent)
    if not started.runs and claim is not None:
        # Left queued: a retry with the key starts it, else the recovery sweep does (or fails
        # it) once it is RECOVERY_MIN_AGE_MINUTES old.
        raise orchestrator_unavailable(
            f"the orchestrator is unavailable ({started.error}); job {job_id} is queued: "
            f"retry with the same {IDEMPOTENCY_HEADER}",
            job_id=job_id,
        )
    return await started_job(session, settings, job, started)


async def started_job(
    session: AsyncSession, settings: Settings, job: Job, started: StartResult
) -> JobPublic:
    """The new job once its start was asked for; a 503 (or 502) when it could not start."""
    if started.runs:
        return job_public(job, settings)
    job_id = job.id
    if started.outcome == StartOutcome.UNKNOWN:
        # It may run: never failed behind its back. The sweep starts it or finds it running.
        raise orchestrator_unavailable(
            f"the orchestrator did not answer ({started.error}); job {job_id} may have "
            "started: it is started or failed within minutes; GET it to follow it, and send an "
            f"{IDEMPOTENCY_HEADER} to retry creates safely",
            job_id=job_id,
        )
    await advance_job(
        session, job_id, JobStatus.FAILED, error=f"could not start the job: {started.error}"
    )
    await session.commit()
    if not started.unavailable:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"the orchestrator refused the job: {started.error}"
        )
    raise orchestrator_unavailable(
        f"the orchestrator is unavailable ({started.error}); try again", job_id=job_id
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
        started = await start_new(temporal, settings, job, sent)
        if not started.runs:
            raise orchestrator_unavailable(
                f"the orchestrator is unavailable ({started.error}); job {job.id} is queued: "
                f"retry with the same {IDEMPOTENCY_HEADER}",
                job_id=job.id,
            )
    return job_public(job, settings)


@adopt_router.post("/adopt", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def adopt(
    body: AdoptRequest,
    caller: AdminCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    providers: ProvidersDep,
    response: Response,
) -> JobPublic:
    """Follow a job started at a provider outside the system (or before a crash) to the end.

    Admin only: the job is looked up with our provider key. It becomes a job of the caller,
    copied to storage like any other when it succeeds.
    """
    provider = providers.get(body.provider)
    if provider is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"provider: {body.provider!r} is not supported; use one of: {', '.join(providers)}",
        )
    prompt = body.prompt
    kind = body.kind or legacy_kind(prompt)
    model = body.model or registry.default_model(body.provider, kind)
    problem = (
        f"{body.provider} has no default model for {kind.value} jobs; name one in 'model'"
        if model is None
        else registry.model_error(body.provider, model, kind)
    )
    if problem is not None:
        raise invalid("model", problem, body.model)
    assert model is not None
    known = await find_tracked(session, body.provider, body.provider_job_id)
    if known is not None:
        known_id, owner = known
        detail = {
            "code": "already_tracked",
            "message": f"{body.provider} job {body.provider_job_id} is already tracked",
        }
        if caller.can_see(owner):  # another user's job id is theirs to know
            detail |= {"message": f"{detail['message']} as job {known_id}", "job_id": known_id}
        raise HTTPException(status.HTTP_409_CONFLICT, detail)
    if body.project_id is not None:
        await check_project_node(session, caller, body.project_id, body.node_id)
    await session.rollback()  # end the reads before the provider call and the writes (SQLite)
    job_id = uuid.uuid4().hex
    try:
        await provider.get(
            ProviderRef(
                job_id=job_id,
                kind=kind,
                provider=body.provider,
                provider_job_id=body.provider_job_id,
                model=model,
            )
        )
    except ProviderRejected as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"provider_job_id: {body.provider} does not know job {body.provider_job_id!r} ({exc})",
        ) from exc
    except (ProviderError, httpx.HTTPError) as exc:
        raise provider_failure(body.provider, exc) from exc
    job = Job(
        id=job_id, user_id=caller.user_id, kind=kind.value, provider=body.provider, model=model,
        input={"prompt": prompt} if prompt else {}, status=JobStatus.QUEUED.value,
        provider_job_id=body.provider_job_id, project_id=body.project_id, node_id=body.node_id,
        metadata_={"adopted": True},
    )  # fmt: skip
    await record_adopted(session, job, caller.user_id)
    started = await start_adopting(temporal, settings, job)
    if not started.runs:
        # Recorded: the recovery sweep adopts it once it is RECOVERY_MIN_AGE_MINUTES old.
        raise orchestrator_unavailable()
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return job_public(job, settings)


def provider_failure(provider: str, exc: Exception) -> HTTPException:
    """A provider that can't answer now: 503 (with its Retry-After when it rate limits us), or
    502 when it could not be reached at all; never a 500."""
    headers = None
    if isinstance(exc, ProviderRateLimited):
        code, status_code, message = "provider_rate_limited", 503, f"is rate limiting us: {exc}"
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    elif isinstance(exc, ProviderError):
        code, status_code, message = "provider_unavailable", 503, f"is unavailable: {exc}"
    elif isinstance(exc, httpx.TimeoutException):
        code, status_code = "provider_unavailable", 503
        message = f"did not answer in time ({type(exc).__name__})"
    else:
        code, status_code = "provider_unreachable", 502
        message = f"could not be reached ({type(exc).__name__})"
    return HTTPException(
        status_code,
        {"code": code, "message": f"{provider} {message}", "provider": provider},
        headers=headers,
    )


@router.post("/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=BatchAccepted)
async def cancel_jobs(
    body: BulkCancelRequest,
    caller: CurrentCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    response: Response,
) -> BatchAccepted:
    """Cancel many jobs (by ids or filter) as a batch; finished ones are skipped."""
    extra = {"reason": body.reason}
    return await start_bulk(
        BatchAction.CANCEL, body, extra, caller, session, temporal, settings, response
    )


@router.post("/rerun", status_code=status.HTTP_202_ACCEPTED, response_model=BatchAccepted)
async def rerun_jobs(
    body: BulkRerunRequest,
    caller: CurrentCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    response: Response,
) -> BatchAccepted:
    """Rerun many jobs (by ids or filter) as a batch; each makes a new job linked to its old."""
    return await start_bulk(
        BatchAction.RERUN, body, {}, caller, session, temporal, settings, response
    )


async def start_bulk(
    action: BatchAction,
    body: BulkJobsRequest,
    extra: dict[str, Any],
    caller: Caller,
    session: AsyncSession,
    temporal: Client,
    settings: Settings,
    response: Response,
) -> BatchAccepted:
    """Match the jobs, record the batch and start its workflow."""
    if body.all_users and not caller.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "all_users: acting on other users' jobs needs an admin key"
        )
    cap = settings.bulk_max_jobs
    if body.ids is not None and len(set(body.ids)) > cap:
        raise invalid("ids", f"at most {cap} jobs per batch (got {len(set(body.ids))})")
    selection = Selection(
        user_id=None if body.all_users else caller.user_id,
        ids=body.ids,
        filter=body.filter.as_filter() if body.filter is not None else None,
    )
    job_ids = await match_jobs(session, selection, limit=cap + 1)
    if len(job_ids) > cap:
        raise invalid(
            "filter", f"the filter matches more than {cap} jobs, the most one batch may touch: "
            "narrow it (e.g. by created_after / created_before)",
        )  # fmt: skip
    await session.rollback()  # end the reads before writing (SQLite)
    batch = await record_batch(
        session, batch_id=uuid.uuid4().hex, user_id=caller.user_id, action=action,
        all_users=body.all_users,
        criteria={**body.criteria(), **extra, "as_admin": caller.is_admin}, job_ids=job_ids,
    )  # fmt: skip
    batch_id, matched = batch.id, batch.total
    status_url = f"/v1/jobs/batches/{batch_id}"
    response.headers["Location"] = status_url
    started = await start_batch(temporal, settings, batch)
    if not started.runs:
        if started.outcome != StartOutcome.UNKNOWN:
            await session.rollback()
            await finish_batch(session, batch_id, f"could not start: {started.error}")
        raise orchestrator_unavailable(
            f"the orchestrator is unavailable ({started.error}); batch {batch_id} was not "
            "started: try again", batch_id=batch_id,
        )  # fmt: skip
    return BatchAccepted(
        batch_id=batch_id, action=action, matched=matched, status_url=status_url,
        topic=batch_topic(batch_id),
    )  # fmt: skip


@router.get("/batches/{batch_id}", response_model=BatchPublic)
async def read_batch(
    batch_id: JobId, caller: CurrentCaller, session: SessionDep, settings: SettingsDep
) -> BatchPublic:
    """A bulk cancel or rerun: its status and progress (done, failed, skipped of total)."""
    batch = await get_batch(session, batch_id)
    if batch is None or not caller.can_see(batch.user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"batch {batch_id} not found")
    failed = await failures(session, batch_id, MAX_FAILURES_SHOWN)
    return batch_public(batch, failed, settings)


@router.get("", response_model=JobsPublic)
async def list_my_jobs(
    caller: CurrentCaller,
    session: SessionDep,
    settings: SettingsDep,
    kind: JobKind | None = None,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    project_id: str | None = None,
    provider: Annotated[str | None, Query(max_length=64, description="a provider's name")] = None,
    created_from: Annotated[
        datetime | None, Query(description="created at or after (ISO 8601; no zone: UTC)")
    ] = None,
    created_to: Annotated[datetime | None, Query(description="created before (exclusive)")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> JobsPublic:
    """Your jobs, newest first (admins: everyone's), filtered and paged by cursor."""
    if provider is not None and provider not in registry.specs():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, registry.unsupported(provider))
    rows = await list_jobs(
        session,
        user_id=None if caller.is_admin else caller.user_id,
        kind=kind.value if kind else None,
        status=status_.value if status_ else None,
        project_id=project_id,
        provider=provider,
        created_from=_utc(created_from),
        created_to=_utc(created_to),
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


def _utc(moment: datetime | None) -> datetime | None:
    """A query's time in UTC (one given without a zone is read as UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get("/{job_id}", response_model=JobPublic)
async def read_job(
    job_id: JobId,
    caller: CurrentCaller,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> JobPublic:
    """One job with its status, outputs and timings; a queued job with its place in line."""
    job = await visible_job(session, caller, job_id)
    public = job_public(job, settings)
    if settings.admission_enabled and job.status == JobStatus.QUEUED.value:
        public.queue_position = await queue_position(temporal, job.provider, job.id)
    return public


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
        cancelled, job = await cancel.cancel_job(temporal, session, job, reason)
    except Unreachable as exc:
        metrics.signal(MEDIA_JOB_WORKFLOW, CANCEL_SIGNAL, sent=False)
        raise orchestrator_unavailable(f"could not reach the job: {exc}", job_id=job_id) from exc
    metrics.signal(MEDIA_JOB_WORKFLOW, CANCEL_SIGNAL, sent=cancelled == Cancelled.SIGNALED)
    if cancelled == Cancelled.STRANDED:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            {"code": "job_stranded",
             "message": f"job {job_id} has no running workflow; the recovery sweep adopts it "
                        "within minutes: cancel it again then", "job_id": job_id},
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )  # fmt: skip
    if cancelled == Cancelled.MOVED_ON:
        # Its workflow started meanwhile and moved it on: the cancel reaches it next time.
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"job {job_id} is {job.status} now; cancel it again"
        )
    return job_public(job, settings)


@router.post("/{job_id}/rerun", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def rerun(
    job_id: JobId,
    caller: CurrentCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    response: Response,
    body: RerunRequest | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobPublic:
    """Run a job again as a new job (its `rerun_of` names this one), its input optionally edited.

    With an `Idempotency-Key`, a retry answers with the job the first request made.
    """
    edit = body.input if body else None
    claim = Claim.of(
        idempotency_key, user_id=caller.user_id, scope="job-reruns",
        body=RerunKeyed(job_id=job_id, input=edit), ttl_hours=settings.idempotency_ttl_hours,
    )  # fmt: skip
    if claim is not None and (made := await claim.resource(session)) is not None:
        return await job_made_before(session, temporal, settings, caller, response, made)
    old = await visible_job(session, caller, job_id)
    try:
        job, started = await rerun_job(
            session, temporal, settings, old, edit, is_admin=caller.is_admin,
            can_see=caller.can_see, also_record=claim.record if claim is not None else None,
        )  # fmt: skip
    except RerunRefused as exc:
        raise invalid(exc.field, exc.message, exc.value) from exc
    except IntegrityError:
        # Only the key's row can collide: a request with the same key got there first.
        made = await claim.resource(session) if claim is not None else None
        if made is None:
            raise
        return await job_made_before(session, temporal, settings, caller, response, made)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    assert started is not None  # a new id: always started here
    if not started.runs and claim is not None:
        raise orchestrator_unavailable(
            f"the orchestrator is unavailable ({started.error}); job {job.id} is queued: "
            f"retry with the same {IDEMPOTENCY_HEADER}",
            job_id=job.id,
        )
    return await started_job(session, settings, job, started)


@router.get("/{job_id}/outputs/{index}", response_model=None)
async def read_output(
    job_id: JobId,
    index: int,
    request: Request,
    credentials: BearerCredentials,
    keyring: KeyRingDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    token: LinkToken = None,
) -> Any:
    """The stored file (a redirect to a presigned URL on S3), by the job's auth or its link."""
    scope = output_scope(job_id, index)
    caller = await link_or_key(keyring, settings, credentials, token, scope)
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
    keyring: KeyRingDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    token: LinkToken = None,
) -> Any:
    """The output's WebP thumbnail (images only), by the job's auth or its link."""
    scope = output_scope(job_id, index, thumbnail=True)
    caller = await link_or_key(keyring, settings, credentials, token, scope)
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
    if job.status == JobStatus.EXPIRED.value:
        raise HTTPException(
            status.HTTP_410_GONE,
            f"job {job_id} expired: its outputs were deleted after the retention period "
            "(OUTPUT_RETENTION_DAYS)",
        )
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
