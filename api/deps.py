"""Typed dependencies: long-lived clients live on `app.state` (opened in the lifespan)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.auth import Caller, KeyRejected, KeyRing
from core.settings import Settings
from storage.base import Storage

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    keyring: KeyRing = request.app.state.keyring
    try:
        return await keyring.caller(credentials.credentials)
    except KeyRejected as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from None


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
StorageDep = Annotated[Storage, Depends(get_storage)]
CurrentCaller = Annotated[Caller, Depends(get_caller)]
# The Authorization header if any, for routes that also open by a signed link (api.link_auth).
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_admin(request: Request, caller: CurrentCaller) -> Caller:
    """403 unless the caller's key is an admin's (sync runs, schedules, recovery)."""
    if not caller.is_admin:
        what = request.url.path.removeprefix("/v1/").split("/")[0].replace("-", " ")
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"{what} need an admin API key")
    return caller


AdminCaller = Annotated[Caller, Depends(require_admin)]
