"""API keys: `Authorization: Bearer <key>`; a key belongs to a user, admins see everything."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import ApiKey, User
from storage.keys import safe_part

CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Caller:
    user_id: str
    is_admin: bool

    def can_see(self, owner_id: str) -> bool:
        return self.is_admin or self.user_id == owner_id


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Looks keys up in the DB, remembering answers briefly so requests don't each query it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._cache: dict[str, tuple[float, Caller | None]] = {}

    async def caller(self, key: str) -> Caller | None:
        digest = hash_key(key)
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(User.id, User.is_admin)
                    .join(ApiKey, ApiKey.user_id == User.id)
                    .where(ApiKey.key_hash == digest)
                )
            ).first()
        caller = Caller(user_id=row[0], is_admin=bool(row[1])) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + CACHE_SECONDS, caller)
        return caller


async def ensure_keys(
    sessions: async_sessionmaker[AsyncSession], keys: list[tuple[str, str, bool]]
) -> None:
    """Create the users and keys listed in BOOTSTRAP_API_KEYS (idempotent)."""
    for _, user_id, _ in keys:
        # A user id names a storage folder: refuse at start-up what could never store a file.
        safe_part(user_id, "BOOTSTRAP_API_KEYS user id")
    async with sessions() as session:
        for key, user_id, is_admin in keys:
            user = await session.get(User, user_id)
            if user is None:
                session.add(User(id=user_id, is_admin=is_admin))
            else:
                user.is_admin = is_admin
            if await session.get(ApiKey, hash_key(key)) is None:
                session.add(ApiKey(key_hash=hash_key(key), user_id=user_id))
            await session.flush()
        await session.commit()
