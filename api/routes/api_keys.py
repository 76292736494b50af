"""API keys (admins): list, create (the key is shown once), revoke.

A key's `id` is the first 16 hex digits of its SHA-256, the only form a key is stored in.
Revoking takes effect at once in this process and within `api.auth.CACHE_SECONDS` in every
other API process; a revoked key is never restored, not even by BOOTSTRAP_API_KEYS.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import KEY_ID_PATTERN, hash_key, key_id
from api.deps import AdminCaller, KeyRingDep, SessionDep
from core.ids import NAME_ID_PATTERN
from core.models import ApiKey, User, utcnow
from storage.keys import safe_part

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])

ApiKeyId = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="the key's id")]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(max_length=64, description="the key's user; created if missing")
    # Printable text only: it is shown in lists and logs, and PostgreSQL text can't hold NUL.
    name: str = Field(
        min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$", description="what it is for"
    )
    admin: bool | None = Field(
        default=None,
        description="for a new user: whether they are an admin (default false). Rights belong "
        "to the user: for an existing user it must match, or be left out",
    )

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, value: str) -> str:
        # A user id names a storage folder.
        return safe_part(value, "user_id")


class ApiKeyPublic(BaseModel):
    id: str = Field(description="the first 16 hex digits of the key's SHA-256")
    user_id: str
    is_admin: bool = Field(description="whether the key's user is an admin")
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    bootstrap: bool = Field(
        description="made from BOOTSTRAP_API_KEYS (refused by an API process whose list no longer has it)"
    )


class ApiKeysPublic(BaseModel):
    items: list[ApiKeyPublic]


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the key itself: shown this once, never stored")


def key_public(row: ApiKey, is_admin: bool) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=key_id(row.key_hash),
        user_id=row.user_id,
        is_admin=is_admin,
        name=row.name,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        bootstrap=row.bootstrap,
    )


async def find_key(session: AsyncSession, id_: str) -> tuple[ApiKey, bool]:
    rows = (
        await session.execute(
            select(ApiKey, User.is_admin)
            .join(User, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash.startswith(id_))
            .limit(2)
        )
    ).all()
    if len(rows) != 1:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {id_}")
    return rows[0][0], bool(rows[0][1])


@router.get("", response_model=ApiKeysPublic)
async def list_keys(
    caller: AdminCaller,
    session: SessionDep,
    user_id: Annotated[str | None, Query(pattern=NAME_ID_PATTERN)] = None,
) -> ApiKeysPublic:
    """Every key (never the key itself), oldest first; `user_id` filters."""
    query = select(ApiKey, User.is_admin).join(User, ApiKey.user_id == User.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    rows = (await session.execute(query.order_by(ApiKey.created_at, ApiKey.key_hash))).all()
    return ApiKeysPublic(items=[key_public(row, bool(admin)) for row, admin in rows])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_key(
    body: ApiKeyCreate, caller: AdminCaller, session: SessionDep, response: Response
) -> ApiKeyCreated:
    """A new key for a user (made if missing); the answer is the only time it is shown."""
    user = await session.get(User, body.user_id)
    if user is None:
        user = User(id=body.user_id, is_admin=bool(body.admin))
        session.add(user)
        await session.flush()  # before its key: the models declare no order between the two
    elif body.admin is not None and body.admin != user.is_admin:
        role = "an admin" if user.is_admin else "not an admin"
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {
                "code": "user_role_differs",
                "message": f"user {body.user_id!r} exists and is {role}: leave `admin` out",
            },
        )
    key = secrets.token_urlsafe(32)
    row = ApiKey(key_hash=hash_key(key), user_id=body.user_id, name=body.name, bootstrap=False)
    session.add(row)
    await session.flush()
    public = key_public(row, user.is_admin)
    await session.commit()
    response.headers["Location"] = f"/v1/api-keys/{public.id}"
    return ApiKeyCreated(**public.model_dump(), key=key)


@router.get("/{api_key_id}", response_model=ApiKeyPublic)
async def read_key(api_key_id: ApiKeyId, caller: AdminCaller, session: SessionDep) -> ApiKeyPublic:
    return key_public(*await find_key(session, api_key_id))


@router.delete("/{api_key_id}", response_model=ApiKeyPublic)
async def revoke_key(
    api_key_id: ApiKeyId, caller: AdminCaller, session: SessionDep, keyring: KeyRingDep
) -> ApiKeyPublic:
    """Revoke a key: it is refused from now on ("revoked API key"); revoking again is a no-op."""
    row, is_admin = await find_key(session, api_key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.commit()
    keyring.forget(row.key_hash)
    return key_public(row, is_admin)
