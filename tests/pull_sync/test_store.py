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
    record_pulls,
    register,
    store_answers,
    store_records,
    unregister,
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


async def test_answers_of_several_clients_are_stored_together_and_counted_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two clients of one user in one statement: an item both touch ends as the newest says,
    each client's stored_count grows by its new records only, timestamps read back exact."""
    first = await new_client(sessions, "http://127.0.0.1:1")
    second = await new_client(sessions, "http://127.0.0.1:2")
    later = T0 + timedelta(microseconds=7)
    answers = {
        first: [rec(1, "capture", T0, item=5), rec(2, "capture", T0, item=6)],
        second: [rec(1, "remove", later, item=5), rec(3, "favorite", T0, item=7)],
    }
    async with sessions() as session, session.begin():
        assert await store_answers(session, answers) == {first: 2, second: 2}
    async with sessions() as session, session.begin():  # the same answers again: nothing new
        assert await store_answers(session, answers) == {}
    async with sessions() as session:
        item = await session.get(PullItem, ("u1", "5"))
        assert item is not None and (item.action, item.client_id) == ("remove", second)
        assert item.recorded_at == later
        record = await session.get(PullRecord, (first, "r2"))
        assert record is not None and record.recorded_at == T0
        assert record.payload == {"pokemon_id": 6} and record.item_key == "6"
        counts = dict((await session.execute(select(PullClient.id, PullClient.stored_count))).all())
        assert counts == {first: 2, second: 2}


async def test_a_batch_of_pulls_is_recorded_at_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ok = await new_client(sessions, "http://127.0.0.1:1")
    failing = await new_client(sessions, "http://127.0.0.1:2")
    gone = await new_client(sessions, "http://127.0.0.1:3")
    async with sessions() as session, session.begin():
        row = await session.get(PullClient, gone)
        assert row is not None
        await unregister(session, [row])
    for n in range(1, 4):
        outcomes = [
            PullOutcome(ok, ok=True, fetched=2, stored=2, acknowledged=2, pending=n),
            PullOutcome(failing, ok=False, error=f"down {n}"),
            PullOutcome(gone, ok=True),
        ]
        async with sessions() as session, session.begin():
            became = await record_pulls(
                session, outcomes, cycle_id=f"c{n}", mode="all", max_failures=3
            )
        assert became == ({failing: "inactive"} if n == 3 else {})
    async with sessions() as session:
        good = await session.get(PullClient, ok)
        bad = await session.get(PullClient, failing)
        assert good is not None and bad is not None
        assert (good.consecutive_failures, good.pending_count, good.active) == (0, 3, True)
        assert good.last_ok_at is not None and good.last_pull_at is not None
        assert (bad.consecutive_failures, bad.last_error, bad.active) == (3, "down 3", False)
        assert bad.inactive_since is not None and bad.pending_count == 0
        attempts = (await session.scalars(select(PullAttempt.client_id))).all()
        assert sorted(attempts) == sorted([ok, failing] * 3)  # none for the unregistered one
        events = (
            await session.execute(
                select(Event.type, Event.payload).where(Event.type != "pull_client.registered")
            )
        ).all()
        kinds = [(type_, payload["id"]) for type_, payload in events]
        assert kinds.count(("pull_client.pulled", ok)) == 3
        assert kinds.count(("pull_client.pulled", failing)) == 2
        assert ("pull_client.inactive", failing) in kinds
        inactive = next(p for t, p in events if t == "pull_client.inactive")
        assert inactive["active"] is False and inactive["consecutive_failures"] == 3
