"""Pull-sync writes on SQLite and PostgreSQL: stored once, last action by timestamp, failures
counted to inactive, health reactivating, cleanup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Event
from core.pull_models import PullAttempt, PullClient, PullItem, PullRecord
from core.pull_store import (
    PulledRecord,
    PullOutcome,
    cleanup,
    mark_healthy,
    record_pull,
    register,
    store_records,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def sessions(
    sessions_each_db: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    return sessions_each_db  # every test here runs on SQLite and on PostgreSQL


def rec(
    i: int, action: str = "capture", at: datetime = T0, item: int | None = None
) -> PulledRecord:
    return PulledRecord(
        id=f"r{i}", user_id="u1", action=action, payload={"pokemon_id": item or i}, timestamp=at
    )


async def new_client(
    sessions: async_sessionmaker[AsyncSession], url: str = "http://127.0.0.1:1"
) -> str:
    async with sessions() as session, session.begin():
        client, created = await register(
            session, url=url, user_id="u1", client_type="web", capabilities=["capture"], by="root"
        )
        assert created
        return client.id


async def test_same_records_twice_are_stored_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await new_client(sessions)
    records = [rec(i) for i in range(1, 6)]
    async with sessions() as session, session.begin():
        assert await store_records(session, client, records) == 5
    async with sessions() as session, session.begin():
        assert await store_records(session, client, [*records[2:], rec(6)]) == 1
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(PullRecord)) == 6
        assert await session.scalar(select(func.count()).select_from(PullItem)) == 6


async def test_remove_after_capture_wins_by_timestamp_in_any_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await new_client(sessions)
    capture = rec(1, "capture", T0, item=7)
    remove = rec(2, "remove", T0 + timedelta(seconds=1), item=7)
    async with sessions() as session, session.begin():  # the remove arrives first
        await store_records(session, client, [remove])
    async with sessions() as session, session.begin():
        await store_records(session, client, [capture])
    async with sessions() as session:
        item = await session.get(PullItem, ("u1", "7"))
        assert item is not None and item.action == "remove"
    # and in one answer, in order
    async with sessions() as session, session.begin():
        await store_records(
            session,
            client,
            [rec(3, "capture", T0, item=8), rec(4, "remove", T0 + timedelta(1), item=8)],
        )
    async with sessions() as session:
        item = await session.get(PullItem, ("u1", "8"))
        assert item is not None and item.action == "remove"


async def test_failures_make_inactive_and_health_reactivates(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    client = await new_client(sessions)
    became = []
    for _ in range(3):
        async with sessions() as session, session.begin():
            became.append(
                await record_pull(
                    session, PullOutcome(client, ok=False, error="down"),
                    cycle_id="c", mode="all", max_failures=3,
                )
            )  # fmt: skip
    assert became == [None, None, "inactive"]
    async with sessions() as session, session.begin():
        assert await mark_healthy(session, client, healthy=False) is False
    async with sessions() as session, session.begin():
        assert await mark_healthy(session, client, healthy=True) is True
    async with sessions() as session:
        row = await session.get(PullClient, client)
        assert row is not None and row.active and row.consecutive_failures == 0
        types = (await session.scalars(select(Event.type).order_by(Event.id))).all()
        assert "pull_client.inactive" in types and types[-1] == "pull_client.reactivated"


async def test_cleanup_removes_old_inactive_clients_and_old_attempts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    old = await new_client(sessions, "http://127.0.0.1:1")
    recent = await new_client(sessions, "http://127.0.0.1:2")
    live = await new_client(sessions, "http://127.0.0.1:3")
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        for client_id, since in (
            (old, now - timedelta(days=10)),
            (recent, now - timedelta(days=1)),
        ):
            row = await session.get(PullClient, client_id)
            assert row is not None
            row.active, row.inactive_since = False, since
        await store_records(session, old, [rec(1)])
        session.add(PullAttempt(client_id=old, cycle_id="c", mode="all", ok=True, fetched=0,
                                stored=0, acknowledged=0, at=now - timedelta(days=30)))  # fmt: skip
    async with sessions() as session, session.begin():
        removed = await cleanup(session, inactive_days=7, history_days=7)
    assert removed == {"clients": 1, "attempts": 1, "cycles": 0}
    async with sessions() as session:
        left = set((await session.scalars(select(PullClient.id))).all())
        assert left == {recent, live}
        assert await session.scalar(select(func.count()).select_from(PullRecord)) == 1
