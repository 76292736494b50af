"""`Idempotency-Key` on creates: the same key from the same user answers with the same resource.

A create that carries a key writes an `idempotency_keys` row in the transaction that writes
its resource, so the two exist together or not at all. A second request with the key finds
the row and answers with that resource (as it is now) instead of making another; a request
racing the first loses on the row's primary key at commit and does the same. A different body
under a used key is a 409: the key names one request, not a slot to reuse. Rows older than
IDEMPOTENCY_TTL_HOURS count as absent (the maintenance prune deletes them).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Depends, Header, HTTPException, status
from pydantic import BaseModel
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import IdempotencyKey, utcnow

HEADER = "Idempotency-Key"
# Printable ASCII, as most APIs that take the header require (a UUID fits many times over).
_KEY = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$")


def _checked_key(
    value: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="makes a retried create safe: the same key (1-255 printable ASCII "
            "characters) and body answer with the resource the first request made; the same "
            "key with another body is a 409 (`idempotency_key_reused`). Kept for "
            "IDEMPOTENCY_TTL_HOURS (24 h).",
        ),
    ] = None,
) -> str | None:
    if value is not None and not _KEY.match(value):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            {"code": "invalid_idempotency_key",
             "message": f"{HEADER} must be 1 to 255 printable ASCII characters"},
        )  # fmt: skip
    return value


IdempotencyKeyHeader = Annotated[str | None, Depends(_checked_key)]


def request_hash(body: BaseModel) -> str:
    """SHA-256 of the body as parsed (canonical JSON): formatting and key order don't count."""
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """One request's claim on a key: who, for which kind of resource, with which body."""

    user_id: str
    scope: str  # "jobs", "sync-runs"
    key: str
    request_hash: str
    ttl_hours: float

    @classmethod
    def of(
        cls, key: str | None, *, user_id: str, scope: str, body: BaseModel, ttl_hours: float
    ) -> Claim | None:
        """The claim a request makes, or None when it sent no key."""
        if key is None:
            return None
        return cls(user_id, scope, key, request_hash(body), ttl_hours)

    def _oldest_alive(self) -> datetime:
        return utcnow() - timedelta(hours=self.ttl_hours)

    async def resource(self, session: AsyncSession) -> str | None:
        """The id of the resource this key already made (None: none yet, or expired).

        409 when the key was used with another body.
        """
        row = await session.get(IdempotencyKey, (self.user_id, self.scope, self.key))
        if row is None or row.created_at < self._oldest_alive():
            return None
        if row.request_hash != self.request_hash:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                {"code": "idempotency_key_reused",
                 "message": f"{HEADER} {self.key!r} was used with another request body; "
                 "send a new key for a new request",
                 "resource_id": row.resource_id},
            )  # fmt: skip
        return row.resource_id

    async def record(self, session: AsyncSession, resource_id: str) -> None:
        """Write the key with its resource (in the resource's transaction; an expired row of
        the same key goes first)."""
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.user_id == self.user_id,
                IdempotencyKey.scope == self.scope,
                IdempotencyKey.key == self.key,
                IdempotencyKey.created_at < self._oldest_alive(),
            )
        )
        session.add(
            IdempotencyKey(
                user_id=self.user_id,
                scope=self.scope,
                key=self.key,
                request_hash=self.request_hash,
                resource_id=resource_id,
            )
        )
