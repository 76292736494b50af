"""API keys: `Authorization: Bearer <key>`; a key belongs to a user, admins see everything.

Only a SHA-256 of a key is stored; the first 16 hex digits of that hash are the key's public
id (listing, revoking, and the key a stream token was made with). A revoked key is refused
with "revoked API key".

Revocation reaches every API process through the cache's short life, not through a message:
`KeyRing` remembers an answer for CACHE_SECONDS, the process that revokes a key forgets it at
once (`KeyRing.forget`), and every other process asks the database again within CACHE_SECONDS.
One bound that holds for every process, with no invalidation message that could be missed.

Keys from BOOTSTRAP_API_KEYS are checked against this process's own list: one that is no longer
listed is refused here at once (`KeyRing(listed=…)`), and nothing is written for it. Writing a
revocation at start-up would let one replica with a stale or empty list (a rolling deploy, a
missing variable) revoke every other replica's keys for good.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import ApiKey, User
from storage.keys import safe_part

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0
KEY_ID_LENGTH = 16
KEY_ID_PATTERN = rf"^[0-9a-f]{{{KEY_ID_LENGTH}}}$"
_KEY_ID = re.compile(KEY_ID_PATTERN)


@dataclass(frozen=True)
class Caller:
    user_id: str
    is_admin: bool
    key_id: str  # the public id of the API key the request came with

    def can_see(self, owner_id: str) -> bool:
        return self.is_admin or self.user_id == owner_id


class KeyRejected(Exception):
    """The key (or the key behind a stream token) is refused; the message says why."""

    def __init__(self, message: str = "unknown API key") -> None:
        super().__init__(message)


class KeyRevoked(KeyRejected):
    def __init__(self) -> None:
        super().__init__("revoked API key")


class KeyUnlisted(KeyRejected):
    def __init__(self) -> None:
        super().__init__("revoked API key: no longer listed in BOOTSTRAP_API_KEYS")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key_hash: str) -> str:
    return key_hash[:KEY_ID_LENGTH]


def valid_key_id(value: str) -> bool:
    return _KEY_ID.fullmatch(value) is not None


class KeyRing:
    """Looks keys up in the DB, remembering answers briefly so requests don't each query it."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], listed: frozenset[str] = frozenset()
    ) -> None:
        self._sessions = sessions
        self._listed = listed  # hashes of the keys this process's BOOTSTRAP_API_KEYS lists
        # by key hash, and by "id:{key id}" for stream tokens: the caller, or why it is refused
        self._cache: dict[str, tuple[float, Caller | type[KeyRejected]]] = {}

    async def caller(self, key: str) -> Caller:
        """The caller a key stands for; KeyRejected if it is unknown or revoked."""
        digest = hash_key(key)
        return await self._lookup(digest, ApiKey.key_hash == digest)

    async def caller_by_id(self, id_: str) -> Caller:
        """The caller of the key with this public id (a stream token names its key by id)."""
        if not valid_key_id(id_):
            raise KeyRejected()
        return await self._lookup(f"id:{id_}", ApiKey.key_hash.startswith(id_))

    def forget(self, key_hash: str) -> None:
        self._cache.pop(key_hash, None)
        self._cache.pop(f"id:{key_id(key_hash)}", None)

    async def _lookup(self, cache_key: str, where: ColumnElement[bool]) -> Caller:
        cached = self._cache.get(cache_key)
        if cached is None or cached[0] <= time.monotonic():
            cached = (time.monotonic() + CACHE_SECONDS, await self._ask(where))
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[cache_key] = cached
        if isinstance(cached[1], Caller):
            return cached[1]
        raise cached[1]()

    async def _ask(self, where: ColumnElement[bool]) -> Caller | type[KeyRejected]:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(
                        ApiKey.key_hash, ApiKey.revoked_at, ApiKey.bootstrap, User.id, User.is_admin
                    )
                    .join(User, ApiKey.user_id == User.id)
                    .where(where)
                    .limit(2)
                )
            ).all()
        if len(rows) != 1:  # none, or (by id only) two keys sharing 64 bits of hash
            return KeyRejected
        digest, revoked_at, bootstrap, user_id, is_admin = rows[0]
        if revoked_at is not None:
            return KeyRevoked
        if bootstrap and digest not in self._listed:
            return KeyUnlisted
        return Caller(user_id=user_id, is_admin=bool(is_admin), key_id=key_id(digest))


async def ensure_keys(
    sessions: async_sessionmaker[AsyncSession], keys: list[tuple[str, str, bool]]
) -> frozenset[str]:
    """Create the users and keys listed in BOOTSTRAP_API_KEYS (idempotent); return the listed
    keys' hashes, the only bootstrap keys this process accepts (see the module docstring).

    A listed key that an admin revoked stays revoked (it may have leaked): list a new key.
    """
    for _, user_id, _ in keys:
        # A user id names a storage folder: refuse at start-up what could never store a file.
        safe_part(user_id, "BOOTSTRAP_API_KEYS user id")
    listed = [hash_key(key) for key, _, _ in keys]
    async with sessions() as session:
        for (_, user_id, is_admin), digest in zip(keys, listed, strict=True):
            user = await session.get(User, user_id)
            if user is None:
                session.add(User(id=user_id, is_admin=is_admin))
            else:
                user.is_admin = is_admin
            row = await session.get(ApiKey, digest)
            if row is None:
                session.add(
                    ApiKey(key_hash=digest, user_id=user_id, name="bootstrap", bootstrap=True)
                )
            else:
                row.bootstrap = True
                if row.revoked_at is not None:
                    log.warning(
                        "BOOTSTRAP_API_KEYS lists key %s of %s, which is revoked; it stays so",
                        key_id(digest),
                        user_id,
                    )
            await session.flush()
        await session.commit()
    return frozenset(listed)
