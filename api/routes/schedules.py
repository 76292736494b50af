"""Scheduled incremental syncs (admin only): one Temporal Schedule per company.

The schedule starts SyncRunWorkflow every N minutes with overlap policy SKIP; a run that finds
the company busy (a manual run in progress) records itself as skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from temporalio.client import (
    Client,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from api.companies import known_company
from api.deps import AdminCaller, SettingsDep, TemporalDep
from api.errors import orchestrator_unavailable, temporal_errors_as_503
from api.schemas.sync_runs import ScheduleCreate, SchedulePublic, ScheduleRetime
from core.ids import NAME_ID_PATTERN
from core.schedules import next_runs, recent_runs
from core.starts import is_temporal_error, never_sent
from core.sync_runs.start import SCHEDULE_PREFIX, incremental_schedule, schedule_id

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])
# A call on a schedule being deleted can hang until the server gives up (30 s): answer sooner.
RPC_TIMEOUT = timedelta(seconds=10)
# Checked before it becomes part of a Temporal schedule id.
CompanyPath = Annotated[str, Path(pattern=NAME_ID_PATTERN, description="the company's id")]


async def _public(handle: ScheduleHandle, company_id: str) -> SchedulePublic:
    described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    intervals = described.schedule.spec.intervals
    return SchedulePublic(
        company_id=company_id,
        schedule_id=handle.id,
        every_minutes=int(intervals[0].every.total_seconds() // 60) if intervals else None,
        paused=described.schedule.state.paused,
        note=described.schedule.state.note or None,
        next_runs=next_runs(described),
        recent_runs=recent_runs(described),
    )


@asynccontextmanager
async def _answering(temporal: Client, company_id: str | None) -> AsyncIterator[None]:
    """Temporal's errors as answers: a schedule deleted while a request works on it (a PATCH
    racing a DELETE) is a 404 at any step, and an unreachable server a 503."""
    try:
        yield
    except Exception as exc:
        if not is_temporal_error(exc):
            raise
        if (
            company_id is not None
            and isinstance(exc, RPCError)
            and not never_sent(exc)
            and (exc.status == RPCStatusCode.NOT_FOUND or await _deleted(temporal, company_id))
        ):
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"company {company_id} has no schedule"
            ) from exc
        raise orchestrator_unavailable() from exc


async def _deleted(temporal: Client, company_id: str) -> bool:
    """After a failed call: while its delete settles, a schedule answers FAILED_PRECONDITION
    ("workflow execution closed") or lets the call time out; asked again, it is not found."""
    handle = temporal.get_schedule_handle(schedule_id(company_id))
    try:
        await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except Exception as exc:
        if not is_temporal_error(exc):
            raise
        return isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND
    return False


async def _handle(temporal: Client, company_id: str) -> ScheduleHandle:
    handle = temporal.get_schedule_handle(schedule_id(company_id))
    await handle.describe(rpc_timeout=RPC_TIMEOUT)  # a 404 (`_answering`) before acting
    return handle


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SchedulePublic)
async def create_schedule(
    body: ScheduleCreate,
    caller: AdminCaller,
    temporal: TemporalDep,
    settings: SettingsDep,
    response: Response,
) -> SchedulePublic:
    """Run an incremental sync of the company every N minutes (overlapping runs are skipped)."""
    known_company(settings, body.company_id)
    schedule = incremental_schedule(
        settings, body.company_id, timedelta(minutes=body.every_minutes),
        paused=body.paused, note=f"created by {caller.user_id}",
    )  # fmt: skip
    try:
        async with temporal_errors_as_503():
            handle = await temporal.create_schedule(
                schedule_id(body.company_id), schedule, rpc_timeout=RPC_TIMEOUT
            )
    except ScheduleAlreadyRunningError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"company {body.company_id} already has a schedule"
        ) from None
    response.headers["Location"] = f"/v1/schedules/{body.company_id}"
    async with _answering(temporal, body.company_id):
        return await _public(handle, body.company_id)


@router.get("", response_model=list[SchedulePublic])
async def list_schedules(caller: AdminCaller, temporal: TemporalDep) -> list[SchedulePublic]:
    """Every company's schedule."""
    found: list[SchedulePublic] = []
    async with _answering(temporal, None):
        async for entry in await temporal.list_schedules(rpc_timeout=RPC_TIMEOUT):
            if not entry.id.startswith(SCHEDULE_PREFIX):
                continue
            company = entry.id.removeprefix(SCHEDULE_PREFIX)
            try:
                found.append(await _public(temporal.get_schedule_handle(entry.id), company))
            except RPCError as exc:
                if never_sent(exc) or not await _deleted(temporal, company):
                    raise
                # deleted since it was listed: not there any more
    return sorted(found, key=lambda s: s.company_id)


@router.get("/{company_id}", response_model=SchedulePublic)
async def read_schedule(
    company_id: CompanyPath, caller: AdminCaller, temporal: TemporalDep
) -> SchedulePublic:
    """One company's schedule, with its next run times."""
    async with _answering(temporal, company_id):
        return await _public(await _handle(temporal, company_id), company_id)


@router.post("/{company_id}/pause", response_model=SchedulePublic)
async def pause_schedule(
    company_id: CompanyPath, caller: AdminCaller, temporal: TemporalDep
) -> SchedulePublic:
    """Stop starting runs until resumed."""
    async with _answering(temporal, company_id):
        handle = await _handle(temporal, company_id)
        await handle.pause(note=f"paused by {caller.user_id}", rpc_timeout=RPC_TIMEOUT)
        return await _public(handle, company_id)


@router.post("/{company_id}/resume", response_model=SchedulePublic)
async def resume_schedule(
    company_id: CompanyPath, caller: AdminCaller, temporal: TemporalDep
) -> SchedulePublic:
    """Start runs again."""
    async with _answering(temporal, company_id):
        handle = await _handle(temporal, company_id)
        await handle.unpause(note=f"resumed by {caller.user_id}", rpc_timeout=RPC_TIMEOUT)
        return await _public(handle, company_id)


@router.post(
    "/{company_id}/trigger", status_code=status.HTTP_202_ACCEPTED, response_model=SchedulePublic
)
async def trigger_schedule(
    company_id: CompanyPath, caller: AdminCaller, temporal: TemporalDep, response: Response
) -> SchedulePublic:
    """Start a run now (skipped if one is running)."""
    response.headers["Location"] = f"/v1/schedules/{company_id}"
    async with _answering(temporal, company_id):
        handle = await _handle(temporal, company_id)
        await handle.trigger(rpc_timeout=RPC_TIMEOUT)
        return await _public(handle, company_id)


@router.patch("/{company_id}", response_model=SchedulePublic)
async def retime_schedule(
    company_id: CompanyPath, body: ScheduleRetime, caller: AdminCaller, temporal: TemporalDep
) -> SchedulePublic:
    """Change how often it runs."""

    def retime(update: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = update.description.schedule
        schedule.spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(minutes=body.every_minutes))]
        )
        return ScheduleUpdate(schedule=schedule)

    async with _answering(temporal, company_id):
        handle = await _handle(temporal, company_id)
        await handle.update(retime, rpc_timeout=RPC_TIMEOUT)
        return await _public(handle, company_id)


@router.delete("/{company_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_schedule(
    company_id: CompanyPath, caller: AdminCaller, temporal: TemporalDep
) -> None:
    """Remove the schedule (runs already started go on)."""
    async with _answering(temporal, company_id):
        await (await _handle(temporal, company_id)).delete(rpc_timeout=RPC_TIMEOUT)
