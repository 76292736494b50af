"""Pulling three emulated clients (a real emulator process, a real SQLite app DB): stored once,
acknowledged; lost acknowledges lose nothing; failures to inactive and back; hostile answers
refused whole, other clients unaffected; client URLs only inside the allowed networks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities import pull_sync
from core.outbound import OutboundFetcher
from core.pull_contracts import PullMode
from tests.pull_sync.support import (
    MAX_FAILURES,
    MAX_RECORDS,
    activities,
    add_capture,
    add_records,
    client_row,
    emulate,
    emulator_client,
    fetcher,
    pull,
    register_emulated,
    set_faults,
    settings,
    stored,
    stored_total,
)

CLIENTS = ("alpha", "beta", "gamma")


@pytest.fixture
async def http() -> AsyncIterator[OutboundFetcher]:
    async with fetcher(settings()) as client:
        yield client


@pytest.fixture
async def three(
    control: httpx.Client, pull_client_url: str, sessions: async_sessionmaker[AsyncSession]
) -> dict[str, str]:
    """Three emulated clients with 5 pending records each, registered: name -> our id."""
    ids = {}
    for name in CLIENTS:
        emulate(control, name, 5)
        ids[name] = await register_emulated(sessions, pull_client_url, name)
    return ids


async def test_three_clients_pulled_stored_once_and_acknowledged(
    control: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
    three: dict[str, str],
) -> None:
    acts = activities(sessions, http, settings())
    result = await pull(acts, list(three.values()))
    assert [(r.ok, r.fetched, r.stored, r.acknowledged) for r in result.results] == [
        (True, 5, 5, 5)
    ] * 3
    for name, our_id in three.items():
        emulated = emulator_client(control, name)
        assert emulated["pending"] == 0 and emulated["synced"] == 5
        assert await stored(sessions, our_id) == [r["id"] for r in emulated["records"]]
    # Pulled again: nothing pending, nothing new.
    again = await pull(acts, list(three.values()))
    assert all(r.ok and r.fetched == 0 for r in again.results)
    assert await stored_total(sessions) == 15
    row = await client_row(sessions, three["alpha"])
    assert row.stored_count == 5 and row.pending_count == 0 and row.last_ok_at is not None


@pytest.mark.parametrize("fault", ["ack_fails", "ack_lies"])
async def test_a_lost_acknowledge_loses_nothing_and_duplicates_nothing(
    fault: str,
    control: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
    three: dict[str, str],
) -> None:
    acts = activities(sessions, http, settings())
    set_faults(control, "beta", **{fault: True})
    first = await pull(acts, list(three.values()))
    beta = next(r for r in first.results if r.client_id == three["beta"])
    assert not beta.ok and beta.stored == 5 and "acknowledge" in (beta.error or "")
    assert await stored(sessions, three["beta"]) == [f"beta-00000{n}" for n in range(1, 6)]
    set_faults(control, "beta")
    add_records(control, "beta", 2)
    second = await pull(acts, [three["beta"]])
    (beta,) = second.results
    # ack_fails: all 7 come again; ack_lies: the client had marked 5 synced, 2 come.
    assert beta.ok and beta.stored == 2 and beta.fetched == (7 if fault == "ack_fails" else 2)
    assert len(await stored(sessions, three["beta"])) == 7
    assert emulator_client(control, "beta")["pending"] == 0
    assert await stored_total(sessions) == 17


async def test_down_for_n_pulls_goes_inactive_then_health_reactivates(
    control: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
    three: dict[str, str],
) -> None:
    acts = activities(sessions, http, settings())
    set_faults(control, "gamma", down=True)
    for n in range(1, MAX_FAILURES + 1):
        result = await pull(acts, [three["gamma"]])
        assert result.results[0].became == ("inactive" if n == MAX_FAILURES else None)
    row = await client_row(sessions, three["gamma"])
    assert not row.active and row.consecutive_failures == MAX_FAILURES
    assert "503" in (row.last_error or "")
    plan = await acts.plan(PullMode.ALL.value)
    assert three["gamma"] not in [c for batch in plan.batches for c in batch]
    health_plan = await acts.plan(PullMode.HEALTH.value)
    assert health_plan.batches == [[three["gamma"]]]
    # Still down: the probe leaves it inactive.
    probe = await pull(acts, [three["gamma"]], PullMode.HEALTH)
    assert (
        probe.results[0].became is None and not (await client_row(sessions, three["gamma"])).active
    )
    set_faults(control, "gamma")
    probe = await pull(acts, [three["gamma"]], PullMode.HEALTH)
    assert probe.results[0].became == "active"
    assert (await client_row(sessions, three["gamma"])).active
    result = await pull(acts, [three["gamma"]])
    assert result.results[0].stored == 5


HOSTILE = [
    ({"malformed_json": True}, "not valid JSON"),
    ({"wrong_types": True}, "wrong shape"),
    ({"missing_ids": True}, "wrong shape"),
    ({"huge_body": True}, "larger than"),
    ({"ignore_limit": True}, f"more than {MAX_RECORDS}"),
    ({"server_error": True}, "HTTP 500"),
    ({"slow": True}, "timeout"),
]


@pytest.mark.parametrize(("switches", "reason"), HOSTILE, ids=[next(iter(s)) for s, _ in HOSTILE])
async def test_hostile_answers_are_refused_whole_and_others_go_on(
    switches: dict[str, bool],
    reason: str,
    control: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
    three: dict[str, str],
) -> None:
    if "ignore_limit" in switches:  # more pending than the cap, all sent at once
        add_records(control, "alpha", MAX_RECORDS)
    acts = activities(sessions, http, settings())
    set_faults(control, "alpha", **switches)
    result = await pull(acts, list(three.values()))
    alpha, *others = result.results
    assert not alpha.ok and reason in (alpha.error or ""), alpha.error
    assert alpha.stored == 0 and await stored(sessions, three["alpha"]) == []
    assert emulator_client(control, "alpha")["synced"] == 0
    assert [(r.ok, r.stored) for r in others] == [(True, 5), (True, 5)]
    assert (await client_row(sessions, three["alpha"])).consecutive_failures == 1


async def test_acknowledge_naming_ids_never_sent_is_an_error(
    control: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
    three: dict[str, str],
) -> None:
    acts = activities(sessions, http, settings())
    set_faults(control, "alpha", ack_unknown_ids=True)
    (alpha,) = (await pull(acts, [three["alpha"]])).results
    assert not alpha.ok and "never sent" in (alpha.error or "")
    assert len(await stored(sessions, three["alpha"])) == 5  # the records themselves were fine


async def test_records_of_another_user_are_refused(
    control: httpx.Client,
    pull_client_url: str,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
) -> None:
    emulate(control, "mallory", 0)
    add_capture(control, "mallory", {"pokemon_id": 1, "user_id": "someone-else"})
    our_id = await register_emulated(sessions, pull_client_url, "mallory")
    (result,) = (await pull(activities(sessions, http, settings()), [our_id])).results
    assert not result.ok and "someone-else" in (result.error or "")
    assert await stored(sessions, our_id) == []


async def test_client_urls_outside_the_allowed_networks_are_not_fetched(
    control: httpx.Client,
    pull_client_url: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    emulate(control, "far", 2)
    our_id = await register_emulated(sessions, pull_client_url, "far")
    async with fetcher(settings(pull_sync_allowed_networks=["10.0.0.0/8"])) as narrow:
        (result,) = (await pull(activities(sessions, narrow, settings()), [our_id])).results
    assert not result.ok and "outside the allowed networks" in (result.error or "")
    assert emulator_client(control, "far")["requests"] == {}


async def test_recent_pulls_only_clients_with_pending_records(
    control: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
    three: dict[str, str],
) -> None:
    acts = activities(sessions, http, settings())
    await pull(acts, list(three.values()))
    add_records(control, "beta", 1)
    result = await pull(acts, list(three.values()), PullMode.RECENT)
    assert [(r.skipped, r.stored) for r in result.results] == [(True, 0), (False, 1), (True, 0)]


async def test_a_store_that_fails_fails_the_batch_and_acknowledges_nothing(
    control: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
    three: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records are acknowledged only once their transaction committed: a database that fails
    the store fails the whole batch (Temporal retries it), and no client hears a thing."""

    async def broken(*args: object, **kwargs: object) -> dict[str, int]:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    acts = activities(sessions, http, settings())
    monkeypatch.setattr(pull_sync, "store_answers", broken)
    with pytest.raises(OperationalError):
        await pull(acts, list(three.values()))
    await asyncio.sleep(0.2)  # anything left running would show now
    left = [t for t in asyncio.all_tasks() if "pull_batch" in repr(t.get_coro())]
    assert left == []
    assert await stored_total(sessions) == 0
    for name in CLIENTS:
        emulated = emulator_client(control, name)
        assert emulated["pending"] == 5 and "acknowledge" not in emulated["requests"]
    monkeypatch.undo()
    again = await pull(acts, list(three.values()))  # the retry stores and acknowledges all
    assert [(r.ok, r.stored, r.acknowledged) for r in again.results] == [(True, 5, 5)] * 3


async def test_two_batches_at_once_share_one_writer_and_lose_nothing(
    control: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    http: OutboundFetcher,
    three: dict[str, str],
) -> None:
    """A sync-all during a scheduled cycle: both batches pull the same clients at once, their
    answers meet in one group commit (one writer per worker), and every record is stored
    once, counted once, and acknowledged."""
    acts = activities(sessions, http, settings())
    ids = list(three.values())
    first, second = await asyncio.gather(pull(acts, ids), pull(acts, ids))
    assert all(r.ok for r in first.results + second.results)
    assert await stored_total(sessions) == 15
    for name, our_id in three.items():
        stored_now = sum(r.stored for r in first.results + second.results if r.client_id == our_id)
        assert stored_now == 5  # counted by whichever batch stored them, never twice
        assert emulator_client(control, name)["pending"] == 0
        assert (await client_row(sessions, our_id)).stored_count == 5
