"""Sync runs (admin only): start, read with live progress and logs, list, cancel."""

from __future__ import annotations

import calendar
import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.deps import AdminCaller, SessionDep, SettingsDep, TemporalDep
from api.idempotency import Claim, IdempotencyKeyHeader
from api.pagination import MAX_DB_INT, decode_cursor, encode_cursor
from api.routes.metrics import MetricsDep
from core.contracts import (
    SA_COMPANY,
    SA_STATUS,
    TERMINAL_SYNC_STATUSES,
    SyncMode,
    SyncRunInput,
    SyncStatus,
    sync_run_workflow_id,
)
from core.events import append_run_status
from core.models import ACTIVE_SYNC_STATUSES, SyncRun, SyncRunLog, SyncRunModule, utcnow
from core.settings import Settings
from core.starts import RETRY_AFTER_SECONDS, StartResult, is_temporal_error, start_resolved
from sync_modules.registry import all_modules
from workflows.sync_run import SyncRunWorkflow

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


router = APIRouter(prefix="/v1/sync-runs", tags=["sync runs"])


class SyncRunCreate(BaseModel):
    """A run: `incremental` (from each module's cursor) or `period` (a month or two dates)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"company_id": "acme", "mode": "period", "month": "2024-12"}]
        },
    )

    company_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    mode: SyncMode
    month: str | None = Field(None, description="period runs: YYYY-MM")
    start_date: date | None = None
    end_date: date | None = None
    modules: list[str] | None = Field(None, description="a subset of the modules; default all")

    @model_validator(mode="after")
    def _check(self) -> SyncRunCreate:
        known = list(all_modules())
        unknown = [m for m in self.modules or [] if m not in known]
        if unknown:
            raise ValueError(f"unknown modules {unknown}; known: {', '.join(known)}")
        if self.modules is not None and not self.modules:
            raise ValueError("modules, when given, must name at least one module")
        if self.mode == SyncMode.INCREMENTAL:
            if self.month or self.start_date or self.end_date:
                raise ValueError(
                    "incremental runs take no month or dates (they start from each module's cursor)"
                )
            return self
        if self.month:
            if self.start_date or self.end_date:
                raise ValueError("give either month or start_date/end_date, not both")
            match = _MONTH.match(self.month)
            if not match or not 1 <= int(match.group(2)) <= 12:
                raise ValueError(f"month {self.month!r} must look like 2024-12 (YYYY-MM)")
            year, month = int(match.group(1)), int(match.group(2))
            self.start_date = date(year, month, 1)
            self.end_date = date(year, month, calendar.monthrange(year, month)[1])
        if not self.start_date or not self.end_date:
            raise ValueError("period runs need month (YYYY-MM) or both start_date and end_date")
        if self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self


class ModulePublic(BaseModel):
    status: str
    processed: int = 0
    skipped: int = 0
    errors: int = 0
    pages: int = 0
    enriched: int = 0
    error: str | None = None


class LogPublic(BaseModel):
    id: int
    at: datetime
    level: str
    module: str | None
    message: str
    metadata: dict[str, Any]


class SyncRunPublic(BaseModel):
    id: str
    company_id: str
    mode: SyncMode
    start_date: date | None
    end_date: date | None
    status: SyncStatus
    current_module: str | None
    modules: dict[str, ModulePublic]
    error_message: str | None
    triggered_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    workflow_id: str
    workflow_url: str | None
    recent_logs: list[LogPublic] = Field(default_factory=list)


class SyncRunsPublic(BaseModel):
    items: list[SyncRunPublic]
    next_cursor: str | None


class LogsPublic(BaseModel):
    items: list[LogPublic]
    next_after: int | None = Field(description="pass as ?after= for the next page")


def log_public(log: SyncRunLog) -> LogPublic:
    return LogPublic(id=log.id, at=log.at, level=log.level, module=log.module,
                     message=log.message, metadata=log.metadata_)  # fmt: skip


def run_public(
    run: SyncRun,
    settings: Settings,
    live: dict[str, SyncRunModule] | None = None,
    logs: list[SyncRunLog] | None = None,
) -> SyncRunPublic:
    modules: dict[str, ModulePublic] = {}
    for name in run.modules:
        row = (live or {}).get(name)
        entry = run.progress.get("modules", {}).get(name, {})
        if row is not None:
            modules[name] = ModulePublic(status=row.status, processed=row.processed,
                                         skipped=row.skipped, errors=row.errors,
                                         pages=row.pages, enriched=row.enriched,
                                         error=row.error)  # fmt: skip
        else:
            modules[name] = ModulePublic(**{"status": "pending", **entry})
    workflow_id = sync_run_workflow_id(run.id)
    ui = settings.temporal_ui_url.rstrip("/")
    return SyncRunPublic(
        id=run.id, company_id=run.company_id, mode=SyncMode(run.mode), start_date=run.start_date,
        end_date=run.end_date, status=SyncStatus(run.status), current_module=run.current_module,
        modules=modules, error_message=run.error_message, triggered_by=run.triggered_by,
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        workflow_id=workflow_id,
        workflow_url=f"{ui}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
        if ui else None,
        recent_logs=[log_public(log) for log in logs or []],
    )  # fmt: skip


async def get_run(session: SessionDep, run_id: str) -> SyncRun:
    run = await session.get(SyncRun, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sync run {run_id} not found")
    return run


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=SyncRunPublic)
async def start_sync_run(
    body: SyncRunCreate,
    caller: AdminCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> SyncRunPublic:
    """Start a run; 409 with the running run's id while the company already has one.

    With an `Idempotency-Key`, a retry answers with the run the first request made.
    """
    claim = Claim.of(
        idempotency_key, user_id=caller.user_id, scope="sync-runs", body=body,
        ttl_hours=settings.idempotency_ttl_hours,
    )  # fmt: skip
    if claim is not None and (made := await claim.resource(session)) is not None:
        return await run_made_before(session, temporal, settings, response, made)
    await session.rollback()  # end the key's read before writing (SQLite)
    if body.company_id not in settings.erp_tokens:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"company {body.company_id!r} has no ERP token configured (ERP_TOKENS)",
        )
    modules = body.modules or list(all_modules())
    run = SyncRun(
        id=uuid.uuid4().hex, company_id=body.company_id, mode=body.mode.value,
        start_date=body.start_date, end_date=body.end_date, modules=modules,
        status=SyncStatus.QUEUED.value, progress={}, triggered_by=caller.user_id,
    )  # fmt: skip
    session.add(run)
    try:
        if claim is not None:
            await claim.record(session, run.id)
        await append_run_status(session, run)
        await session.commit()
    except IntegrityError:
        await session.rollback()
        # A request with the same key got there first, or the company has a run going.
        made = await claim.resource(session) if claim is not None else None
        if made is not None:
            return await run_made_before(session, temporal, settings, response, made)
        running = await session.scalar(
            select(SyncRun.id).where(
                SyncRun.company_id == body.company_id, SyncRun.status.in_(ACTIVE_SYNC_STATUSES)
            )
        )
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"message": f"company {body.company_id} already has a run in progress",
             "running_run_id": running},
        ) from None  # fmt: skip
    response.headers["Location"] = f"/v1/sync-runs/{run.id}"
    started = await start_resolved(
        temporal, sync_run_workflow_id(run.id), lambda: start_run_workflow(temporal, settings, run)
    )
    if not started.runs:
        await fail_unstarted(session, run, started)
    return run_public(run, settings)


async def fail_unstarted(session: AsyncSession, run: SyncRun, started: StartResult) -> NoReturn:
    """Fail a run whose workflow could not be started, and answer 503 (Retry-After).

    Failed, not left queued: a queued run holds the company's one active slot. When the start's
    answer was lost (`UNKNOWN`) the workflow may run after all: its status writes never move a
    failed run, so the record stays failed and the company's slot free.
    """
    run.status = SyncStatus.FAILED.value
    run.error_message = f"could not start the run: {started.error}"
    run.finished_at = utcnow()
    await append_run_status(session, run)
    await session.commit()
    raise HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        {"code": "orchestrator_unavailable",
         "message": f"the orchestrator is unavailable ({started.error}); run {run.id} was "
                    "recorded failed: try again", "run_id": run.id},
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )  # fmt: skip


async def start_run_workflow(temporal: Client, settings: Settings, run: SyncRun) -> None:
    """Start the run's workflow; refused (WorkflowAlreadyStartedError) if it ever had one."""
    mode = SyncMode(run.mode)
    await temporal.start_workflow(
        SyncRunWorkflow.run,
        SyncRunInput(
            run_id=run.id, company_id=run.company_id, mode=mode, modules=list(run.modules),
            start_date=run.start_date.isoformat() if run.start_date else None,
            end_date=run.end_date.isoformat() if run.end_date else None,
            page_size=settings.sync_page_size, concurrency=settings.sync_concurrency,
            pages_per_activity=settings.sync_pages_per_activity,
            max_retries=settings.sync_max_retries, task_queue=settings.erp_task_queue,
            max_enrich=settings.max_enrich_per_run,
        ),
        id=sync_run_workflow_id(run.id),
        task_queue=settings.sync_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(SA_COMPANY, run.company_id),
            SearchAttributePair(SA_STATUS, SyncStatus.QUEUED.value),
        ]),
        static_summary=f"{mode.value} sync · company {run.company_id}"
        + (f" · {run.start_date}..{run.end_date}" if run.start_date else ""),
    )  # fmt: skip


async def run_made_before(
    session: AsyncSession, temporal: Client, settings: Settings, response: Response, run_id: str
) -> SyncRunPublic:
    """The run an Idempotency-Key made, as it is now; started if its first request died
    between the commit and the start."""
    run = await get_run(session, run_id)
    response.headers["Location"] = f"/v1/sync-runs/{run.id}"
    if run.status == SyncStatus.QUEUED.value:
        started = await start_resolved(
            temporal,
            sync_run_workflow_id(run.id),
            lambda: start_run_workflow(temporal, settings, run),
        )
        if not started.runs:
            await fail_unstarted(session, run, started)
    return run_public(run, settings)


@router.get("", response_model=SyncRunsPublic)
async def list_sync_runs(
    caller: AdminCaller,
    session: SessionDep,
    settings: SettingsDep,
    company_id: str | None = None,
    status_: Annotated[SyncStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> SyncRunsPublic:
    """History of runs, newest first, filtered by company and status."""
    query = select(SyncRun)
    if company_id:
        query = query.where(SyncRun.company_id == company_id)
    if status_:
        query = query.where(SyncRun.status == status_.value)
    if cursor:
        created, run_id = decode_cursor(cursor)
        query = query.where(or_(SyncRun.created_at < created,
                                and_(SyncRun.created_at == created, SyncRun.id < run_id)))  # fmt: skip
    rows = (
        await session.scalars(
            query.order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(limit + 1)
        )
    ).all()
    page = list(rows[:limit])
    return SyncRunsPublic(
        items=[run_public(run, settings) for run in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None,
    )


@router.get("/{run_id}", response_model=SyncRunPublic)
async def read_sync_run(
    run_id: str, caller: AdminCaller, session: SessionDep, settings: SettingsDep
) -> SyncRunPublic:
    """A run with its live per-module progress and its 20 latest log lines."""
    run = await get_run(session, run_id)
    live = {
        row.module: row
        for row in (
            await session.scalars(select(SyncRunModule).where(SyncRunModule.run_id == run_id))
        ).all()
    }
    logs = (
        await session.scalars(
            select(SyncRunLog).where(SyncRunLog.run_id == run_id)
            .order_by(SyncRunLog.id.desc()).limit(20)
        )
    ).all()  # fmt: skip
    return run_public(run, settings, live, list(reversed(logs)))


@router.get("/{run_id}/logs", response_model=LogsPublic)
async def read_sync_run_logs(
    run_id: str,
    caller: AdminCaller,
    session: SessionDep,
    level: Annotated[str | None, Query(pattern="^(info|warn|error)$")] = None,
    module: str | None = None,
    after: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> LogsPublic:
    """A run's log, oldest first, filtered by level and module; page with ?after=."""
    await get_run(session, run_id)
    query = select(SyncRunLog).where(SyncRunLog.run_id == run_id, SyncRunLog.id > after)
    if level:
        query = query.where(SyncRunLog.level == level)
    if module:
        query = query.where(SyncRunLog.module == module)
    rows = (await session.scalars(query.order_by(SyncRunLog.id).limit(limit + 1))).all()
    page = list(rows[:limit])
    return LogsPublic(
        items=[log_public(log) for log in page],
        next_after=page[-1].id if len(rows) > limit else None,
    )


@router.post("/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=SyncRunPublic)
async def cancel_sync_run(
    run_id: str,
    caller: AdminCaller,
    session: SessionDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    response: Response,
) -> SyncRunPublic:
    """Stop a run before its running module's next page; stored rows are kept."""
    run = await get_run(session, run_id)
    response.headers["Location"] = f"/v1/sync-runs/{run_id}"
    if SyncStatus(run.status) in TERMINAL_SYNC_STATUSES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"sync run {run_id} is already {run.status}")
    try:
        await temporal.get_workflow_handle(sync_run_workflow_id(run_id)).signal(
            SyncRunWorkflow.cancel, f"canceled by {caller.user_id}"
        )
    except Exception as exc:
        if not is_temporal_error(exc):
            raise
        metrics.signal("SyncRunWorkflow", "cancel", sent=False)
        if isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND:
            # No workflow will ever move it: it ends here (a queued run holds the company's
            # one active slot).
            run.status = SyncStatus.CANCELED.value
            run.error_message = f"canceled by {caller.user_id} before its workflow started"
            run.finished_at = utcnow()
            await append_run_status(session, run)
            await session.commit()
            return run_public(run, settings)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"could not reach the run: {exc}",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc
    metrics.signal("SyncRunWorkflow", "cancel", sent=True)
    return run_public(run, settings)
