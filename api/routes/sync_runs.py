"""Sync runs (admin only): start, read with live progress and logs, list, cancel."""

from __future__ import annotations

from typing import Annotated, NoReturn

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.companies import known_company
from api.deps import AdminCaller, MetricsDep, SessionDep, SettingsDep, TemporalDep
from api.errors import orchestrator_unavailable
from api.idempotency import Claim, IdempotencyKeyHeader
from api.pagination import MAX_DB_INT, decode_cursor, encode_cursor
from api.schemas.sync_runs import (
    LogsPublic,
    SyncRunCreate,
    SyncRunPublic,
    SyncRunsPublic,
    log_public,
    run_public,
)
from core.contracts import CANCEL_SIGNAL, SYNC_RUN_WORKFLOW, TERMINAL_SYNC_STATUSES, SyncStatus
from core.events import append_run_status
from core.models import SyncRun
from core.settings import Settings
from core.starts import StartResult, Unreachable
from core.sync_runs import store
from core.sync_runs.start import cancel_run, start_run
from sync_modules.registry import all_modules

router = APIRouter(prefix="/v1/sync-runs", tags=["sync runs"])


async def get_run(session: AsyncSession, run_id: str) -> SyncRun:
    run = await store.get_run(session, run_id)
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
    known_company(settings, body.company_id)
    run = store.new_run(
        company_id=body.company_id, mode=body.mode, modules=body.modules or list(all_modules()),
        triggered_by=caller.user_id, start_date=body.start_date, end_date=body.end_date,
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
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {"message": f"company {body.company_id} already has a run in progress",
             "running_run_id": await store.active_run_id(session, body.company_id)},
        ) from None  # fmt: skip
    response.headers["Location"] = f"/v1/sync-runs/{run.id}"
    started = await start_run(temporal, settings, run)
    if not started.runs:
        await fail_unstarted(session, run, started)
    return run_public(run, settings)


async def fail_unstarted(session: AsyncSession, run: SyncRun, started: StartResult) -> NoReturn:
    """Fail a run whose workflow could not be started, and answer 503 (Retry-After).

    Failed, not left queued: a queued run holds the company's one active slot. When the start's
    answer was lost (`UNKNOWN`) the workflow may run after all: its status writes never move a
    failed run, so the record stays failed and the company's slot free.
    """
    await store.end_unstarted(
        session, run, SyncStatus.FAILED, f"could not start the run: {started.error}"
    )
    raise orchestrator_unavailable(
        f"the orchestrator is unavailable ({started.error}); run {run.id} was recorded failed: "
        "try again",
        run_id=run.id,
    )


async def run_made_before(
    session: AsyncSession, temporal: Client, settings: Settings, response: Response, run_id: str
) -> SyncRunPublic:
    """The run an Idempotency-Key made, as it is now; started if its first request died
    between the commit and the start."""
    run = await get_run(session, run_id)
    response.headers["Location"] = f"/v1/sync-runs/{run.id}"
    if run.status == SyncStatus.QUEUED.value:
        started = await start_run(temporal, settings, run)
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
    rows = await store.list_runs(
        session,
        company_id=company_id,
        status=status_.value if status_ else None,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
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
    live = await store.live_modules(session, run_id)
    return run_public(run, settings, live, await store.latest_logs(session, run_id, 20))


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
    rows = await store.list_logs(
        session, run_id, level=level, module=module, after=after, limit=limit + 1
    )
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
        signaled = await cancel_run(temporal, run_id, f"canceled by {caller.user_id}")
    except Unreachable as exc:
        metrics.signal(SYNC_RUN_WORKFLOW, CANCEL_SIGNAL, sent=False)
        raise orchestrator_unavailable(f"could not reach the run: {exc}") from exc
    metrics.signal(SYNC_RUN_WORKFLOW, CANCEL_SIGNAL, sent=signaled)
    if not signaled:
        # No workflow will ever move it: it ends here (a queued run holds the company's one
        # active slot).
        await store.end_unstarted(
            session,
            run,
            SyncStatus.CANCELED,
            f"canceled by {caller.user_id} before its workflow started",
        )
    return run_public(run, settings)
