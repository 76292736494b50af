"""Pull-sync over REST (seed 004): the client registry, pulls on demand, the scheduler, status
and the users' ranking.

Registering: admins, for anyone; with PULL_SYNC_SELF_REGISTRATION any key for its own user (as
the seed's clients registered themselves). The URL must be http(s) without
credentials and resolve inside PULL_SYNC_ALLOWED_NETWORKS. Everything that pulls or steers the
scheduler is for admins. The scheduler is the Temporal Schedule `pull-sync-cycle` (see
`core.pull_schedules`): what these routes change is what the Temporal UI shows.

The seed's paths answer too, as thin aliases: `POST /api/v1/pull-sync/register-client`,
`DELETE /api/v1/pull-sync/unregister-client/{user_id}`, `GET /api/v1/pull-sync/registered-clients`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.pull_sync import client_fetcher
from api.auth import Caller
from api.deps import AdminCaller, CurrentCaller, SessionDep, SettingsDep, TemporalDep
from api.errors import temporal_errors_as_503
from core import pull_queries, pull_schedules
from core.links import workflow_url
from core.outbound import OutboundRefused
from core.pull_contracts import CYCLE_WORKFLOW, CycleSummary, PullCycleInput, PullMode
from core.pull_models import PullClient
from core.pull_store import client_payload, register, unregister
from core.settings import Settings

router = APIRouter(prefix="/v1/pull-sync", tags=["pull-sync"])
seed_router = APIRouter(prefix="/api/v1/pull-sync", tags=["pull-sync (seed aliases)"])

_USER = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
_WORD = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"


# --- shapes ------------------------------------------------------------------------------------


class ClientRegister(BaseModel):
    """The seed's registration body."""

    model_config = ConfigDict(extra="forbid")

    client_url: str = Field(
        min_length=1, max_length=2048, description="base URL; /api/client/... is appended"
    )
    user_id: str | None = Field(
        default=None, pattern=_USER, description="whose records it holds (default: yours)"
    )
    client_type: str = Field(default="web", pattern=_WORD)
    capabilities: list[Annotated[str, Field(pattern=_WORD)]] = Field(
        default_factory=list, max_length=20
    )


class ClientPublic(BaseModel):
    id: str
    url: str
    user_id: str
    client_type: str
    capabilities: list[str]
    active: bool
    consecutive_failures: int
    pending_count: int = Field(description="pending records the client reported at its last pull")
    stored_count: int = Field(description="records stored from it")
    last_pull_at: datetime | None
    last_ok_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    inactive_since: datetime | None
    created_at: datetime | None


class ClientList(BaseModel):
    clients: list[ClientPublic]
    total: int


class ClientResultPublic(BaseModel):
    client_id: str
    ok: bool
    fetched: int
    stored: int
    acknowledged: int
    skipped: bool
    error: str | None
    became: str | None


class SyncResult(BaseModel):
    workflow_id: str
    mode: str
    clients: int
    ok: int
    failed: int
    skipped: int
    stored: int = Field(description="records stored for the first time")
    lag_seconds: float
    results: list[ClientResultPublic]


class SyncStarted(BaseModel):
    workflow_id: str
    mode: str
    temporal_ui: str


class SchedulerPublic(BaseModel):
    schedule_id: str
    exists: bool
    running: bool
    interval_seconds: float | None
    note: str | None = None
    next_runs: list[datetime] = Field(default_factory=list)
    recent_runs: list[str] = Field(default_factory=list)


class SetInterval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=1, le=86400, description="seconds between cycles")


class Unregistered(BaseModel):
    user_id: str
    removed: int


# --- helpers -----------------------------------------------------------------------------------


def _public(client: PullClient) -> ClientPublic:
    return ClientPublic.model_validate(client_payload(client))


def _not_found(message: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, message)


async def _checked_url(settings: Settings, url: str) -> str:
    url = url.strip().rstrip("/")
    async with client_fetcher(settings) as fetcher:
        try:
            await fetcher.check(url)
        except OutboundRefused as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                {"code": "client_url_refused", "message": f"client_url refused: {exc}",
                 "allowed_networks": settings.pull_sync_allowed_networks},
            ) from None  # fmt: skip
        except httpx.HTTPError as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                {"code": "client_url_unresolvable", "message": f"client_url: {exc}"},
            ) from None
    return url


def _scheduler(state: pull_schedules.SchedulerState) -> SchedulerPublic:
    return SchedulerPublic(
        schedule_id=state.schedule_id, exists=True, running=state.running,
        interval_seconds=state.interval_seconds, note=state.note, next_runs=state.next_runs,
        recent_runs=state.recent_runs,
    )  # fmt: skip


async def _run_cycle(
    temporal: Client, settings: Settings, caller: Caller, mode: PullMode, *, wait: bool
) -> SyncResult | SyncStarted:
    workflow_id = f"pull-sync-{mode.value}-{uuid.uuid4().hex[:12]}"
    async with temporal_errors_as_503():
        handle = await temporal.start_workflow(
            CYCLE_WORKFLOW,
            PullCycleInput(mode=mode.value, trigger=caller.user_id),
            id=workflow_id,
            task_queue=settings.pull_sync_task_queue,
            result_type=CycleSummary,
        )
    if not wait:
        return SyncStarted(
            workflow_id=workflow_id,
            mode=mode.value,
            temporal_ui=workflow_url(settings, workflow_id) or "",
        )
    async with temporal_errors_as_503():
        summary: CycleSummary = await handle.result()
    return SyncResult(
        workflow_id=workflow_id, mode=summary.mode, clients=summary.clients, ok=summary.ok,
        failed=summary.failed, skipped=summary.skipped, stored=summary.stored,
        lag_seconds=summary.lag_seconds,
        results=[ClientResultPublic.model_validate(r, from_attributes=True)
                 for r in summary.results],
    )  # fmt: skip


# --- registry ----------------------------------------------------------------------------------


@router.post(
    "/clients",
    response_model=ClientPublic,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ClientPublic, "description": "that URL was registered already"}},
)
async def register_client(
    body: ClientRegister,
    caller: CurrentCaller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> ClientPublic:
    """Register a client to be pulled (again: the same URL updates its registration)."""
    if not (caller.is_admin or settings.pull_sync_self_registration):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "registering a pull client takes an admin key: the worker fetches its URL every "
            "cycle (an operator may let users register their own: PULL_SYNC_SELF_REGISTRATION)",
        )
    user_id = body.user_id or caller.user_id
    if not caller.can_see(user_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "you may only register clients of your own user"
        )
    url = await _checked_url(settings, body.client_url)
    existing = await session.scalar(select(PullClient).where(PullClient.url == url))
    if existing is not None and not caller.can_see(existing.user_id):
        raise HTTPException(status.HTTP_409_CONFLICT, "that URL is registered by another user")
    client, created = await register(
        session, url=url, user_id=user_id, client_type=body.client_type,
        capabilities=body.capabilities, by=caller.user_id,
    )  # fmt: skip
    await session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/pull-sync/clients/{client.id}"
    return _public(client)


@router.get("/clients", response_model=ClientList)
async def list_clients(
    caller: CurrentCaller,
    session: SessionDep,
    active: Annotated[bool | None, Query(description="only active (or inactive) clients")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> ClientList:
    """Registered clients with their last pull, pending count, failures and active flag
    (yours; an admin's key: everyone's)."""
    query = select(PullClient)
    if not caller.is_admin:
        query = query.where(PullClient.user_id == caller.user_id)
    if active is not None:
        query = query.where(PullClient.active.is_(active))
    rows = (await session.scalars(query.order_by(PullClient.created_at, PullClient.id))).all()
    page = rows[offset : offset + limit]
    return ClientList(clients=[_public(c) for c in page], total=len(rows))


@router.delete("/clients/{client_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_client(
    client_id: Annotated[str, Path(max_length=64)], caller: CurrentCaller, session: SessionDep
) -> None:
    """Stop pulling this client (the records stored from it stay)."""
    client = await session.get(PullClient, client_id)
    if client is None or not caller.can_see(client.user_id):
        raise _not_found(f"pull client {client_id} not found")
    await unregister(session, [client])
    await session.commit()


# --- pulling on demand -------------------------------------------------------------------------


@router.post("/sync-all", response_model=SyncResult)
async def sync_all(caller: AdminCaller, temporal: TemporalDep, settings: SettingsDep) -> Any:
    """Pull every active client now and answer with each one's result."""
    return await _run_cycle(temporal, settings, caller, PullMode.ALL, wait=True)


@router.post(
    "/sync-all-background", response_model=SyncStarted, status_code=status.HTTP_202_ACCEPTED
)
async def sync_all_background(
    caller: AdminCaller, temporal: TemporalDep, settings: SettingsDep
) -> Any:
    """Start pulling every active client and answer at once with the workflow id."""
    return await _run_cycle(temporal, settings, caller, PullMode.ALL, wait=False)


@router.post("/sync-recent", response_model=SyncResult)
async def sync_recent(caller: AdminCaller, temporal: TemporalDep, settings: SettingsDep) -> Any:
    """Pull only the active clients whose health reports pending records."""
    return await _run_cycle(temporal, settings, caller, PullMode.RECENT, wait=True)


@router.get("/status")
async def pull_status(caller: AdminCaller, session: SessionDep) -> dict[str, Any]:
    """Clients, pending records, the last day's success rate, the last errors, cycle lag."""
    return await pull_queries.status(session)


@router.get("/ranking")
async def ranking(
    caller: CurrentCaller,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Users ranked by records stored (the seed's consumer of the pulled data)."""
    return {"ranking": await pull_queries.ranking(session, limit)}


# --- the scheduler (the Temporal Schedule `pull-sync-cycle`) -----------------------------------


@router.get("/scheduler/status", response_model=SchedulerPublic)
async def scheduler_status(caller: AdminCaller, temporal: TemporalDep) -> SchedulerPublic:
    """Running or stopped, the interval, next and recent runs, as Temporal describes them."""
    handle = temporal.get_schedule_handle(pull_schedules.CYCLE_SCHEDULE_ID)
    try:
        async with _missing_is_none():
            return _scheduler(await pull_schedules.describe(handle))
    except _Missing:
        return SchedulerPublic(
            schedule_id=handle.id, exists=False, running=False, interval_seconds=None
        )


@router.post("/scheduler/start", response_model=SchedulerPublic)
async def scheduler_start(
    caller: AdminCaller, temporal: TemporalDep, settings: SettingsDep
) -> SchedulerPublic:
    """Run cycles again (creates the schedule if it is missing)."""
    async with temporal_errors_as_503():
        return _scheduler(await pull_schedules.start(temporal, settings, caller.user_id))


@router.post("/scheduler/stop", response_model=SchedulerPublic)
async def scheduler_stop(caller: AdminCaller, temporal: TemporalDep) -> SchedulerPublic:
    """Stop starting cycles (a cycle under way finishes)."""
    try:
        async with _missing_is_none():
            return _scheduler(await pull_schedules.stop(temporal, caller.user_id))
    except _Missing:
        raise _not_found("the pull-sync schedule does not exist; start it first") from None


@router.post("/scheduler/set-interval", response_model=SchedulerPublic)
async def scheduler_set_interval(
    body: SetInterval, caller: AdminCaller, temporal: TemporalDep
) -> SchedulerPublic:
    """Seconds between cycles; running or stopped, the scheduler stays so."""
    try:
        async with _missing_is_none():
            return _scheduler(
                await pull_schedules.set_interval(temporal, body.seconds, caller.user_id)
            )
    except _Missing:
        raise _not_found("the pull-sync schedule does not exist; start it first") from None


class _Missing(Exception):
    pass


@asynccontextmanager
async def _missing_is_none() -> AsyncIterator[None]:
    """A missing schedule raises _Missing; Temporal down is a 503."""
    async with temporal_errors_as_503():
        try:
            yield
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise _Missing() from None
            raise


# --- the seed's paths --------------------------------------------------------------------------


@seed_router.post("/register-client", response_model=ClientPublic)
async def seed_register_client(
    body: ClientRegister,
    caller: CurrentCaller,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> ClientPublic:
    """Alias of `POST /v1/pull-sync/clients`."""
    client = await register_client(body, caller, session, settings, response)
    response.status_code = status.HTTP_200_OK  # the seed's client expects 200
    return client


@seed_router.delete("/unregister-client/{user_id}", response_model=Unregistered)
async def seed_unregister_client(
    user_id: Annotated[str, Path(pattern=_USER)], caller: CurrentCaller, session: SessionDep
) -> Unregistered:
    """Remove every client of this user (the seed registered one client per user)."""
    if not caller.can_see(user_id):
        raise _not_found(f"no pull clients of user {user_id}")
    clients = (await session.scalars(select(PullClient).where(PullClient.user_id == user_id))).all()
    if not clients:
        raise _not_found(f"no pull clients of user {user_id}")
    await unregister(session, clients)
    await session.commit()
    return Unregistered(user_id=user_id, removed=len(clients))


@seed_router.get("/registered-clients", response_model=ClientList)
async def seed_registered_clients(caller: CurrentCaller, session: SessionDep) -> ClientList:
    """Alias of `GET /v1/pull-sync/clients`."""
    return await list_clients(caller, session, None, 5000, 0)
