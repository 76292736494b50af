"""Recovery (admin): check or run the sweep now, and adopt jobs started outside the system.

The sweep itself runs as RecoveryWorkflow on a Temporal Schedule (`autosync-recovery`); these
routes start the same workflow on demand and wait for its report.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from temporalio.service import RPCError

from api.deps import AdminCaller, SessionDep, SettingsDep, TemporalDep
from api.job_inputs import invalid
from api.routes.jobs import check_project_node, job_public
from api.schemas import JobPublic
from core.contracts import JobKind, JobStatus, MediaJobInput, ProviderRef
from core.events import append_event, job_payload, user_topic
from core.job_start import poll_policy, start_job_workflow, webhook_url
from core.models import Job, RecoveryAttempt
from core.recovery import RecoveryReport, legacy_kind
from core.starts import RETRY_AFTER_SECONDS, is_temporal_error
from providers import registry
from providers.base import Provider, ProviderError, ProviderRateLimited, ProviderRejected
from workflows.recovery import RecoveryWorkflow

REPORT_WAIT_SECONDS = 60.0


router = APIRouter(prefix="/v1", tags=["recovery"])


async def _sweep(request: Request, temporal: Any, dry_run: bool) -> JSONResponse:
    settings = request.app.state.settings
    workflow_id = f"recovery-{'check' if dry_run else 'sweep'}-{uuid.uuid4().hex[:12]}"
    try:
        handle = await temporal.start_workflow(
            RecoveryWorkflow.run, dry_run, id=workflow_id, task_queue=settings.media_task_queue
        )
        report: RecoveryReport = await asyncio.wait_for(handle.result(), REPORT_WAIT_SECONDS)
    except TimeoutError:
        ui = settings.temporal_ui_url.rstrip("/")
        # Where to follow it: the sweep has no resource of its own in this API.
        where = f"{ui}/namespaces/{quote(settings.temporal_namespace)}/workflows/{workflow_id}"
        return JSONResponse(
            {"workflow_id": workflow_id, "status": "running",
             "message": "the sweep takes longer than usual: follow it in the Temporal UI"},
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": where} if ui else None,
        )  # fmt: skip
    except Exception as exc:
        if not is_temporal_error(exc):
            raise
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the orchestrator is unavailable; try again",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc
    return JSONResponse(
        {"workflow_id": workflow_id, "dry_run": report.dry_run, "checked": report.checked,
         "counts": report.counts, "items": [asdict(item) for item in report.items]}
    )  # fmt: skip


@router.post("/recovery/check", tags=["recovery"])
async def check(request: Request, caller: AdminCaller, temporal: TemporalDep) -> JSONResponse:
    """What a sweep would do now: jobs at risk, the problem found and the action planned."""
    return await _sweep(request, temporal, dry_run=True)


@router.post("/recovery/trigger", tags=["recovery"])
async def trigger(request: Request, caller: AdminCaller, temporal: TemporalDep) -> JSONResponse:
    """Run a sweep now (as the schedule would) and report what it did."""
    return await _sweep(request, temporal, dry_run=False)


class AdoptRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"provider": "replicate", "provider_job_id": "abc123"}]},
    )

    provider: str = Field(description="a provider's name (GET /v1/me lists them)")
    # Never dots alone: the id becomes a URL path segment at the provider.
    provider_job_id: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]*[A-Za-z0-9_:-][A-Za-z0-9._:-]*$"
    )
    kind: JobKind | None = Field(
        None, description="left out: from the prompt's legacy prefix ([EDITED], [UPSCALED], "
        "[VIDEO]), else generation",
    )  # fmt: skip
    model: str | None = Field(
        None,
        max_length=256,
        description="needed for fal (its URLs); checked like a job's (Replicate "
        "'owner/name[:version]')",
    )
    prompt: str | None = Field(None, max_length=10_000)
    project_id: str | None = None
    node_id: str | None = None


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


@router.post("/jobs/adopt", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
async def adopt(
    body: AdoptRequest,
    request: Request,
    caller: AdminCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    response: Response,
) -> JobPublic:
    """Follow a job started at a provider outside the system (or before a crash) to the end.

    Admin only: the job is looked up with our provider key. It becomes a job of the caller,
    copied to storage like any other when it succeeds.
    """
    providers: dict[str, Provider] = request.app.state.providers
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
    known = (
        await session.execute(
            select(Job.id, Job.user_id).where(
                Job.provider == body.provider, Job.provider_job_id == body.provider_job_id
            )
        )
    ).first()
    if known is not None:
        detail = {
            "code": "already_tracked",
            "message": f"{body.provider} job {body.provider_job_id} is already tracked",
        }
        if caller.can_see(known.user_id):  # another user's job id is theirs to know
            detail |= {"message": f"{detail['message']} as job {known.id}", "job_id": known.id}
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
    session.add(job)
    await session.flush()
    session.add(
        RecoveryAttempt(
            job_id=job_id,
            problem="orphan",
            action="adopt",
            result="started",
            detail=f"adopted by {caller.user_id}",
        )
    )
    await append_event(session, user_topic(job.user_id), "job.queued", job_payload(job))
    await session.commit()
    try:
        await start_job_workflow(
            temporal,
            settings,
            MediaJobInput(
                job_id=job_id, user_id=caller.user_id, kind=kind, provider=body.provider,
                model=model, input=job.input,
                webhook_url=webhook_url(settings, body.provider, job_id),
                poll=poll_policy(settings, kind), project_id=body.project_id,
                node_id=body.node_id, adopt_provider_job_id=body.provider_job_id,
            ),
        )  # fmt: skip
    except RPCError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the orchestrator is unavailable; try again"
        ) from exc
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return job_public(job, settings)
