"""Pull-sync writes (seed 004): clients' registrations, records stored once, per-pull bookkeeping.

Only activities and the API call these; each function leaves the commit to its caller, so a
client's new state, its attempt row and its events land in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import (
    BigInteger,
    Integer,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from core.events import append_event, append_events
from core.models import utcnow
from core.pull_models import PullAttempt, PullClient, PullCycle

# The tables themselves, for the bulk statements (executemany, no ORM objects).
_CLIENTS = cast(Table, PullClient.__table__)
_ATTEMPTS = cast(Table, PullAttempt.__table__)

PULL_SYNC_PREFIX = "pull-sync:"
CLIENTS_TOPIC = f"{PULL_SYNC_PREFIX}clients"
CYCLES_TOPIC = f"{PULL_SYNC_PREFIX}cycles"
# Payload keys naming the item a record is about (the seed's Pokémon id first).
_ITEM_KEYS = ("pokemon_id", "item_id")


@dataclass(slots=True)
class PulledRecord:
    """One record as validated from a client's sync-data answer. (Not frozen: a frozen
    dataclass costs three times as much to build, and a pull builds 50,000 a cycle.)"""

    id: str
    user_id: str
    action: str  # capture | favorite | remove
    payload: dict[str, Any]
    timestamp: datetime
    # `timestamp` in UTC as `2026-01-02 03:04:05.000006`, when the parser read it in that
    # shape already (formatting a datetime costs ten times as much as slicing its text).
    utc_text: str = ""

    @property
    def item_key(self) -> str:
        """What the record is about: its payload's item id, else the record itself.
        (Asked once per stored record: the exact-type tests first, the general ones after.)"""
        payload = self.payload
        for key in _ITEM_KEYS:
            value = payload.get(key)
            if value is None:
                continue
            kind = type(value)
            text: str
            if kind is str:
                text = value
            elif kind is int or (isinstance(value, str | int) and not isinstance(value, bool)):
                text = str(value)
            else:
                continue
            if text:
                return text[:128]
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


# How each backend reads the JSON rows of `store_records`: records are
# `[client_id, record_id, user_id, action, item_key, payload, recorded_at]`, items
# `[user_id, item_key, action, recorded_at, client_id, record_id]`.
_RECORDS_SQL = {
    "postgresql": (
        "SELECT r->>0, r->>1, r->>2, r->>3, r->>4, r->5, CAST(r->>6 AS timestamptz), "
        "CAST(:now AS timestamptz) FROM json_array_elements(CAST(:rows AS json)) AS r"
    ),
    "sqlite": (
        "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
        "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
        "json_extract(value, '$[5]'), json_extract(value, '$[6]'), :now FROM json_each(:rows)"
    ),
}
_ITEMS_SQL = {
    "postgresql": (
        "SELECT r->>0, r->>1, r->>2, CAST(r->>3 AS timestamptz), r->>4, r->>5 "
        "FROM json_array_elements(CAST(:items AS json)) AS r"
    ),
    "sqlite": (
        "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), "
        "json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), "
        "json_extract(value, '$[5]') FROM json_each(:items)"
    ),
}


def _stamp(value: datetime, dialect: str) -> str:
    """A timestamp in the shape the backend stores and compares: `2026-01-02 03:04:05.000006`
    (SQLAlchemy's, on SQLite; UTC), with `+00:00` on PostgreSQL. (isoformat: strftime costs
    ten times as much.)"""
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    text = utc.isoformat(" ", "microseconds")  # ends with +00:00
    return text[:26] if dialect == "sqlite" else text


def _record_stamp(record: PulledRecord, dialect: str) -> str:
    if record.utc_text:
        return record.utc_text if dialect == "sqlite" else record.utc_text + "+00:00"
    return _stamp(record.timestamp, dialect)


async def store_records(
    session: AsyncSession, client_id: str, records: Sequence[PulledRecord]
) -> int:
    """Store records not stored yet (by client and record id); returns how many were new.

    Each record also moves its item's state if it is newer by the client's timestamp (a
    `remove` wins a tie): the same answer stored twice, or out of order, ends the same. The
    client's `stored_count` grows by the new ones in the same transaction, so it stays exact
    whatever is pulled twice.
    """
    return (await store_answers(session, {client_id: records})).get(client_id, 0)


async def store_answers(
    session: AsyncSession, answers: Mapping[str, Sequence[PulledRecord]]
) -> dict[str, int]:
    """`store_records` for the answers of several clients at once (client id -> records);
    returns how many records of each client were new.

    Every answer goes to the database as one JSON document that the database unpacks
    (`json_array_elements` on PostgreSQL, `json_each` on SQLite): three statements whatever
    the number of records. Binding each record's values one by one cost ~1 ms of worker CPU
    per record; this is a few microseconds.
    """
    if not any(answers.values()):
        return {}
    dialect = session.get_bind().dialect.name
    rows: list[list[Any]] = []
    # One row per item (PostgreSQL refuses to update a row twice in one statement): the newest.
    latest: dict[tuple[str, str], list[Any]] = {}
    for client_id, records in answers.items():
        for r in records:
            item_key = r.item_key
            stamp = _record_stamp(r, dialect)
            rows.append([client_id, r.id, r.user_id, r.action, item_key, r.payload, stamp])
            key = (r.user_id, item_key)
            kept = latest.get(key)
            if kept is None or stamp > kept[3] or (stamp == kept[3] and r.action == "remove"):
                latest[key] = [r.user_id, item_key, r.action, stamp, client_id, r.id]
    now = _stamp(utcnow(), dialect)
    inserted = await session.execute(
        text(
            "INSERT INTO pull_records (client_id, record_id, user_id, action, item_key, payload, "
            f"recorded_at, stored_at) {_RECORDS_SQL[dialect]} "
            "WHERE true "  # SQLite's grammar needs a WHERE before ON CONFLICT in INSERT…SELECT
            "ON CONFLICT (client_id, record_id) DO NOTHING RETURNING client_id"
        ),
        {"rows": orjson.dumps(rows).decode(), "now": now},
    )
    new: dict[str, int] = {}
    for (client_id,) in inserted.all():
        new[client_id] = new.get(client_id, 0) + 1
    await session.execute(
        text(
            "INSERT INTO pull_items (user_id, item_key, action, recorded_at, client_id, "
            f"record_id) {_ITEMS_SQL[dialect]} WHERE true "
            "ON CONFLICT (user_id, item_key) DO UPDATE SET action = excluded.action, "
            "recorded_at = excluded.recorded_at, client_id = excluded.client_id, "
            "record_id = excluded.record_id "
            "WHERE excluded.recorded_at > pull_items.recorded_at "
            "OR (excluded.recorded_at = pull_items.recorded_at AND excluded.action = 'remove')"
        ),
        # In key order: concurrent transactions lock the same items in the same order.
        {"items": orjson.dumps([latest[key] for key in sorted(latest)]).decode()},
    )
    if new:
        clients = _CLIENTS
        await session.execute(
            update(clients)
            .where(clients.c.id == bindparam("b_id"))
            .values(stored_count=clients.c.stored_count + bindparam("b_new", type_=BigInteger)),
            [{"b_id": client_id, "b_new": count} for client_id, count in new.items()],
        )
    return new


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
    """`record_pulls` for one pull: `inactive` when it made the client so."""
    became = await record_pulls(
        session, [outcome], cycle_id=cycle_id, mode=mode, max_failures=max_failures
    )
    return became.get(outcome.client_id)


async def record_pulls(
    session: AsyncSession,
    outcomes: Sequence[PullOutcome],
    *,
    cycle_id: str,
    mode: str,
    max_failures: int,
) -> dict[str, str]:
    """Update the clients after their pulls and keep the attempts, a few statements for all;
    returns the clients these pulls made `inactive` (events: `pull_client.pulled` when records
    came or the pull failed, `pull_client.inactive`). A client unregistered meanwhile is
    skipped. The records' `stored_count` was counted when they were stored."""
    if not outcomes:
        return {}
    now = utcnow()
    clients = _CLIENTS
    pending = func.coalesce(bindparam("b_pending", type_=Integer), clients.c.pending_count)
    by_id = clients.c.id == bindparam("b_id")
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    if ok:
        await session.execute(
            update(clients).where(by_id).values(
                last_pull_at=now, updated_at=now, last_ok_at=now, consecutive_failures=0,
                pending_count=pending,
            ),
            [{"b_id": o.client_id, "b_pending": o.pending} for o in ok],
        )  # fmt: skip
    became: dict[str, str] = {}
    if failed:
        await session.execute(
            update(clients).where(by_id).values(
                last_pull_at=now, updated_at=now, last_error_at=now, pending_count=pending,
                consecutive_failures=clients.c.consecutive_failures + 1,
                last_error=bindparam("b_error", type_=Text),
            ),
            [{"b_id": o.client_id, "b_pending": o.pending,
              "b_error": (o.error or "failed")[:2000]} for o in failed],
        )  # fmt: skip
        inactive = await session.execute(
            update(clients)
            .where(
                clients.c.id.in_([o.client_id for o in failed]),
                clients.c.active.is_(True),
                clients.c.consecutive_failures >= max_failures,
            )
            .values(active=False, inactive_since=now)
            .returning(clients.c.id)
        )
        became = {client_id: "inactive" for (client_id,) in inactive.all()}
    rows = {
        client.id: client
        for client in await session.scalars(
            select(PullClient).where(PullClient.id.in_([o.client_id for o in outcomes]))
        )
    }
    here = [o for o in outcomes if o.client_id in rows]
    if here:
        await session.execute(
            insert(_ATTEMPTS),
            [{"client_id": o.client_id, "cycle_id": cycle_id, "mode": mode, "at": now,
              "ok": o.ok, "fetched": o.fetched, "stored": o.stored,
              "acknowledged": o.acknowledged, "error": o.error} for o in here],
        )  # fmt: skip
    events = [
        ("pull_client.inactive" if o.client_id in became else "pull_client.pulled",
         client_payload(rows[o.client_id]))
        for o in here
        if o.client_id in became or o.stored or not o.ok
    ]  # fmt: skip
    await append_events(session, CLIENTS_TOPIC, events)
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
