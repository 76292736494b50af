"""Typed dependencies: long-lived clients live on `app.state` (opened in the lifespan).

This is the one module that reads `app.state`: routes take these aliases instead. Each
dependency takes the connection (`HTTPConnection`), so WebSocket routes use them as HTTP
routes do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from temporalio.client import Client

from api.auth import Caller, KeyRejected, KeyRing
from api.event_hub import EventHub
from api.health_checks import HealthMonitor
from api.metrics import ApiMetrics
from core.settings import Settings
from providers.base import Provider, WebhookVerifier
from storage.base import Storage

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


def get_settings(conn: HTTPConnection) -> Settings:
    settings: Settings = conn.app.state.settings
    return settings


async def get_session(conn: HTTPConnection) -> AsyncIterator[AsyncSession]:
    async with conn.app.state.sessions() as session:
        yield session


def get_sessions(conn: HTTPConnection) -> async_sessionmaker[AsyncSession]:
    """The session factory, for what opens sessions of its own (streams, health figures)."""
    sessions: async_sessionmaker[AsyncSession] = conn.app.state.sessions
    return sessions


def get_temporal(conn: HTTPConnection) -> Client:
    client: Client = conn.app.state.temporal
    return client


def get_storage(conn: HTTPConnection) -> Storage:
    storage: Storage = conn.app.state.storage
    return storage


def get_keyring(conn: HTTPConnection) -> KeyRing:
    keyring: KeyRing = conn.app.state.keyring
    return keyring


def get_providers(conn: HTTPConnection) -> dict[str, Provider]:
    """The configured providers' clients, by name."""
    providers: dict[str, Provider] = conn.app.state.providers
    return providers


def get_webhook_verifiers(conn: HTTPConnection) -> dict[str, WebhookVerifier]:
    verifiers: dict[str, WebhookVerifier] = conn.app.state.webhook_verifiers
    return verifiers


def get_event_hub(conn: HTTPConnection) -> EventHub:
    hub: EventHub = conn.app.state.event_hub
    return hub


def get_live_clients(conn: HTTPConnection) -> int | None:
    """Live streams open on this process; None in an app without an event hub."""
    hub: EventHub | None = getattr(conn.app.state, "event_hub", None)
    return hub.clients if hub is not None else None


def get_metrics(conn: HTTPConnection) -> ApiMetrics:
    """The app's metrics (apps not made by `create_app` get theirs at the first call)."""
    metrics: ApiMetrics | None = getattr(conn.app.state, "metrics", None)
    if metrics is None:
        metrics = conn.app.state.metrics = ApiMetrics()
    return metrics


def get_store_sessions(conn: HTTPConnection) -> async_sessionmaker[AsyncSession] | None:
    """The session factory for the metrics' database figures; None in an app without one."""
    sessions: async_sessionmaker[AsyncSession] | None = getattr(conn.app.state, "sessions", None)
    return sessions


async def caller_of(keyring: KeyRing, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    """The caller of the Authorization header's API key; 401 without a valid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return await keyring.caller(credentials.credentials)
    except KeyRejected as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from None


async def get_caller(
    keyring: Annotated[KeyRing, Depends(get_keyring)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    return await caller_of(keyring, credentials)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
StorageDep = Annotated[Storage, Depends(get_storage)]
KeyRingDep = Annotated[KeyRing, Depends(get_keyring)]
ProvidersDep = Annotated[dict[str, Provider], Depends(get_providers)]
WebhookVerifiersDep = Annotated[dict[str, WebhookVerifier], Depends(get_webhook_verifiers)]
EventHubDep = Annotated[EventHub, Depends(get_event_hub)]
LiveClientsDep = Annotated[int | None, Depends(get_live_clients)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
StoreSessionsDep = Annotated[async_sessionmaker[AsyncSession] | None, Depends(get_store_sessions)]
CurrentCaller = Annotated[Caller, Depends(get_caller)]
# The Authorization header if any, for routes that also open by a signed link (api.link_auth).
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_health_monitor(conn: HTTPConnection, settings: SettingsDep) -> HealthMonitor:
    """The app's health monitor (made at the first call: it caches observations)."""
    monitor: HealthMonitor | None = getattr(conn.app.state, "health_monitor", None)
    if monitor is None:
        monitor = conn.app.state.health_monitor = HealthMonitor(settings)
    return monitor


HealthMonitorDep = Annotated[HealthMonitor, Depends(get_health_monitor)]


def require_admin(request: Request, caller: CurrentCaller) -> Caller:
    """403 unless the caller's key is an admin's (sync runs, schedules, recovery)."""
    if not caller.is_admin:
        what = request.url.path.removeprefix("/v1/").split("/")[0].replace("-", " ")
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{what} need an admin API key")
    return caller


AdminCaller = Annotated[Caller, Depends(require_admin)]
