"""Pull-sync writes (seed 004): clients' registrations, records stored once, per-pull bookkeeping.

Only activities and the API call these; each function leaves the commit to its caller, so a
client's new state, its attempt row and its events land in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.events import append_event
from core.models import utcnow
from core.pull_models import PullAttempt, PullClient, PullCycle, PullItem, PullRecord

PULL_SYNC_PREFIX = "pull-sync:"
CLIENTS_TOPIC = f"{PULL_SYNC_PREFIX}clients"
CYCLES_TOPIC = f"{PULL_SYNC_PREFIX}cycles"
# Rows per INSERT: well under SQLite's 32,766 bound parameters at 8 columns a row.
_CHUNK = 500
# Payload keys naming the item a record is about (the seed's Pokémon id first).
_ITEM_KEYS = ("pokemon_id", "item_id")


@dataclass(frozen=True)
class PulledRecord:
    """One record as validated from a client's sync-data answer."""

    id: str
    user_id: str
    action: str  # capture | favorite | remove
    payload: dict[str, Any]
    timestamp: datetime

    @property
    def item_key(self) -> str:
        """What the record is about: its payload's item id, else the record itself."""
        for key in _ITEM_KEYS:
            value = self.payload.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)[:128]
        return f"record:{self.id}"[:128]


def new_client_id() -> str:
    return f"pc-{uuid.uuid4().hex[:16]}"


def client_payload(client: PullClient) -> dict[str, Any]:
    """What a client's event carries (and the REST listing shows)."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": client.id,
        "url": client.url,
        "user_id": client.user_id,
        "client_type": client.client_type,
        "capabilities": list(client.capabilities or []),
        "active": client.active,
        "consecutive_failures": client.consecutive_failures,
        "pending_count": client.pending_count,
        "stored_count": client.stored_count,
        "last_pull_at": iso(client.last_pull_at),
        "last_ok_at": iso(client.last_ok_at),
        "last_error": client.last_error,
        "last_error_at": iso(client.last_error_at),
        "inactive_since": iso(client.inactive_since),
        "created_at": iso(client.created_at),
    }


async def client_event(session: AsyncSession, client: PullClient, type_: str) -> None:
    await session.flush()
    await append_event(session, CLIENTS_TOPIC, type_, client_payload(client))


async def register(
    session: AsyncSession,
    *,
    url: str,
    user_id: str,
    client_type: str,
    capabilities: Sequence[str],
    by: str,
) -> tuple[PullClient, bool]:
    """Register a client by URL, or refresh the registration of that URL (active again)."""
    client = await session.scalar(select(PullClient).where(PullClient.url == url))
    created = client is None
    now = utcnow()
    if client is None:
        client = PullClient(
            id=new_client_id(), url=url, consecutive_failures=0, pending_count=0,
            stored_count=0, created_at=now,
        )  # fmt: skip
        session.add(client)
    client.user_id = user_id
    client.client_type = client_type
    client.capabilities = list(capabilities)
    client.registered_by = by
    client.active = True
    client.consecutive_failures = 0
    client.inactive_since = None
    client.updated_at = now
    await client_event(session, client, "pull_client.registered")
    return client, created


async def unregister(session: AsyncSession, clients: Sequence[PullClient]) -> None:
    for client in clients:
        await client_event(session, client, "pull_client.unregistered")
        await session.delete(client)


async def store_records(
    session: AsyncSession, client_id: str, records: Sequence[PulledRecord]
) -> int:
    """Store records not stored yet (by client and record id); returns how many were new.

    Each record also moves its item's state if it is newer by the client's timestamp (a
    `remove` wins a tie): the same answer stored twice, or out of order, ends the same.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    new = 0
    for start in range(0, len(records), _CHUNK):
        chunk = records[start : start + _CHUNK]
        rows = [
            {"client_id": client_id, "record_id": r.id, "user_id": r.user_id,
             "action": r.action, "item_key": r.item_key, "payload": r.payload,
             "recorded_at": r.timestamp, "stored_at": now}
            for r in chunk
        ]  # fmt: skip
        stmt = (
            insert(PullRecord)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["client_id", "record_id"])
        )
        new += len((await session.execute(stmt.returning(PullRecord.record_id))).all())
        latest: dict[tuple[str, str], PulledRecord] = {}
        for r in chunk:  # one row per item per statement: PostgreSQL refuses two
            key = (r.user_id, r.item_key)
            if key not in latest or _newer(r, latest[key]):
                latest[key] = r
        items = insert(PullItem).values(
            [
                {"user_id": r.user_id, "item_key": r.item_key, "action": r.action,
                 "recorded_at": r.timestamp, "client_id": client_id, "record_id": r.id}
                for r in latest.values()
            ]
        )  # fmt: skip
        incoming = items.excluded
        await session.execute(
            items.on_conflict_do_update(
                index_elements=["user_id", "item_key"],
                set_={
                    "action": incoming.action,
                    "recorded_at": incoming.recorded_at,
                    "client_id": incoming.client_id,
                    "record_id": incoming.record_id,
                },
                where=or_(
                    incoming.recorded_at > PullItem.recorded_at,
                    and_(
                        incoming.recorded_at == PullItem.recorded_at,
                        incoming.action == "remove",
                    ),
                ),
            )
        )
    return new


def _newer(a: PulledRecord, b: PulledRecord) -> bool:
    return a.timestamp > b.timestamp or (a.timestamp == b.timestamp and a.action == "remove")


@dataclass(frozen=True)
class PullOutcome:
    """What one pull of one client came to."""

    client_id: str
    ok: bool
    fetched: int = 0
    stored: int = 0
    acknowledged: int = 0
    pending: int | None = None  # what the client said is left, when it answered
    error: str | None = None


async def record_pull(
    session: AsyncSession,
    outcome: PullOutcome,
    *,
    cycle_id: str,
    mode: str,
    max_failures: int,
) -> str | None:
    """Update the client after a pull and keep the attempt; returns `inactive` when this pull
    made it so (events: `pull_client.pulled` when records came, `pull_client.inactive`)."""
    client = await session.get(PullClient, outcome.client_id)
    if client is None:  # unregistered while it was being pulled
        return None
    now = utcnow()
    client.last_pull_at = now
    client.updated_at = now
    client.stored_count = (client.stored_count or 0) + outcome.stored
    if outcome.pending is not None:
        client.pending_count = outcome.pending
    became: str | None = None
    if outcome.ok:
        client.consecutive_failures = 0
        client.last_ok_at = now
    else:
        client.consecutive_failures = (client.consecutive_failures or 0) + 1
        client.last_error = (outcome.error or "failed")[:2000]
        client.last_error_at = now
        if client.active and client.consecutive_failures >= max_failures:
            client.active = False
            client.inactive_since = now
            became = "inactive"
    session.add(
        PullAttempt(
            client_id=client.id, cycle_id=cycle_id, mode=mode, at=now, ok=outcome.ok,
            fetched=outcome.fetched, stored=outcome.stored,
            acknowledged=outcome.acknowledged, error=outcome.error,
        )
    )  # fmt: skip
    if became:
        await client_event(session, client, "pull_client.inactive")
    elif outcome.stored or not outcome.ok:
        await client_event(session, client, "pull_client.pulled")
    return became


async def mark_healthy(session: AsyncSession, client_id: str, healthy: bool) -> bool:
    """After a health probe of an inactive client: reactivate it when healthy; True if so."""
    client = await session.get(PullClient, client_id)
    if client is None:
        return False
    now = utcnow()
    client.last_health_at = now
    if not healthy or client.active:
        return False
    client.active = True
    client.consecutive_failures = 0
    client.inactive_since = None
    client.updated_at = now
    await client_event(session, client, "pull_client.reactivated")
    return True


async def record_cycle(session: AsyncSession, cycle: PullCycle) -> None:
    """Keep a cycle (once: a retried activity finds it there) and announce it."""
    if await session.get(PullCycle, cycle.id) is not None:
        return
    session.add(cycle)
    await session.flush()
    await append_event(
        session,
        CYCLES_TOPIC,
        "pull_cycle.finished",
        {"id": cycle.id, "mode": cycle.mode, "clients": cycle.clients, "ok": cycle.ok,
         "failed": cycle.failed, "stored": cycle.stored, "lag_seconds": cycle.lag_seconds,
         "finished_at": cycle.finished_at.isoformat()},
    )  # fmt: skip


async def cleanup(
    session: AsyncSession, *, inactive_days: float, history_days: float
) -> dict[str, int]:
    """Remove clients inactive longer than `inactive_days` and bookkeeping older than
    `history_days`; their stored records stay (they are the users' data)."""
    now = utcnow()
    stale = (
        await session.scalars(
            select(PullClient).where(
                PullClient.active.is_(False),
                PullClient.inactive_since < now - timedelta(days=inactive_days),
            )
        )
    ).all()
    for client in stale:
        await client_event(session, client, "pull_client.removed")
        await session.delete(client)
    horizon = now - timedelta(days=history_days)
    attempts = await session.execute(delete(PullAttempt).where(PullAttempt.at < horizon))
    cycles = await session.execute(delete(PullCycle).where(PullCycle.finished_at < horizon))
    return {
        "clients": len(stale),
        "attempts": int(getattr(attempts, "rowcount", 0) or 0),
        "cycles": int(getattr(cycles, "rowcount", 0) or 0),
    }
