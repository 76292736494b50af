"""A worker SIGKILLed mid-pull (issue 13): every record is stored once and acknowledged.

A stack of its own (Temporal dev server from the wheel, API, worker, the pull-client emulator)
with six emulated clients: two whose sync-data answer is held, two whose acknowledge is held
after their records were stored, two that finish at once. The worker dies while the held
answers are pending; a new worker picks the batch up once its heartbeat times out and pulls
it again. The emulator then shows every record acknowledged (the held acknowledge of the dead
worker marked nothing), and the database holds each record once, counted once.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from temporalio.client import Client

from core.db import sync_url
from core.pull_models import PullClient, PullItem, PullRecord
from devstack.processes import free_port
from devstack.stack import Stack, StackConfig
from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e

ADMIN = "kill-admin"
RECORDS = 30
HELD_SECONDS = 10  # how long the emulator holds a `slow` answer: the kill comes within it
SLOW_FETCH = ("k0", "k1")  # sync-data held: killed before anything is stored
SLOW_ACK = ("k2", "k3")  # acknowledge held: killed after the records were stored
QUICK = ("k4", "k5")  # stored and acknowledged before the kill
CLIENTS = (*SLOW_FETCH, *SLOW_ACK, *QUICK)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix="autosync-pull-kill-"))
    config = StackConfig.ephemeral(
        tmp,
        provider_ports={}, erp_port=None,
        worker_metrics_port=None, pull_client_port=free_port(),
        api_keys=f"{ADMIN}=root:admin",
        env={
            "PULL_CLIENT_EMULATOR_SEED_RECORDS": "0",
            "PULL_CLIENT_EMULATOR_SLOW_SECONDS": str(HELD_SECONDS),
            "PULL_SYNC_TIMEOUT_SECONDS": "15",  # the held answers come within it
            "PULL_SYNC_INTERVAL_SECONDS": "3600",  # no scheduled cycle in the way
        },
        log_dir=ARTIFACTS / "e2e-logs" / "pull-sync-kill",
    )  # fmt: skip
    stack = Stack(config)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def until(
    fetch: Callable[[], Any], done: Callable[[Any], bool], within: float, what: str
) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.1)


def stored_rows(stack: Stack) -> dict[str, Any]:
    """Per registered client id: its stored record ids, stored_count, and items of its user."""
    engine = create_engine(sync_url(stack.database_url))
    try:
        with engine.connect() as db:
            clients = db.execute(select(PullClient.id, PullClient.url, PullClient.user_id,
                                        PullClient.stored_count)).all()  # fmt: skip
            found: dict[str, Any] = {}
            for client in clients:
                ids = db.scalars(
                    select(PullRecord.record_id).where(PullRecord.client_id == client.id)
                ).all()
                items = db.scalar(
                    select(func.count())
                    .select_from(PullItem)
                    .where(PullItem.user_id == client.user_id)
                )
                name = client.url.rsplit("/", 1)[-1]
                found[name] = {"ids": list(ids), "stored_count": client.stored_count,
                               "items": items}  # fmt: skip
            return found
    finally:
        engine.dispose()


async def test_a_worker_killed_mid_pull_stores_every_record_once(stack: Stack) -> None:
    assert stack.pull_client_url is not None
    async with (
        httpx.AsyncClient(base_url=stack.api_url, timeout=30,
                          headers={"Authorization": f"Bearer {ADMIN}"}) as api,
        httpx.AsyncClient(base_url=stack.pull_client_url, timeout=30) as emulator,
    ):  # fmt: skip

        async def stop_scheduler() -> httpx.Response:
            return await api.post("/v1/pull-sync/scheduler/stop")

        # No scheduled cycle in the way (the worker creates the schedule as it starts).
        await until(stop_scheduler, lambda r: r.status_code == 200, 30, "the cycle schedule")
        for name in CLIENTS:
            body = {"client_id": name, "user_id": f"u-{name}", "records": RECORDS}
            (await emulator.post("/_emulator/clients", json=body)).raise_for_status()
            registration = {"client_url": f"{stack.pull_client_url}/c/{name}",
                            "user_id": f"u-{name}"}  # fmt: skip
            (await api.post("/v1/pull-sync/clients", json=registration)).raise_for_status()
        for name in SLOW_FETCH:
            await emulator.put(f"/_emulator/clients/{name}/faults", json={"slow": True})
        for name in SLOW_ACK:
            await emulator.put(f"/_emulator/clients/{name}/faults", json={"slow_acknowledge": True})

        async def identities() -> dict[str, dict[str, Any]]:
            clients = (await emulator.get("/_emulator/clients")).json()["clients"]
            return {c["client_id"]: c for c in clients}

        started = await api.post("/v1/pull-sync/sync-all-background")
        assert started.status_code == 202, started.text
        workflow_id = started.json()["workflow_id"]

        def mid_pull(seen: dict[str, dict[str, Any]]) -> bool:
            return (
                all(seen[n]["requests"].get("sync_data") for n in SLOW_FETCH)
                and all(seen[n]["requests"].get("acknowledge") for n in SLOW_ACK)
                and all(seen[n]["pending"] == 0 for n in QUICK)
            )

        seen = await until(identities, mid_pull, 30, "the pulls to be under way")
        before = stored_rows(stack)
        # The kill lands while the held clients are pending: theirs stored but unacknowledged,
        # the others' not stored at all.
        assert all(len(before[n]["ids"]) == RECORDS and seen[n]["pending"] == RECORDS
                   for n in SLOW_ACK), (before, seen)  # fmt: skip
        assert all(before[n]["ids"] == [] for n in SLOW_FETCH), before
        stack.kill_worker()
        for name in CLIENTS:  # the retry needn't wait for the holds again
            await emulator.delete(f"/_emulator/clients/{name}/faults")
        stack.start_worker()

        temporal = await Client.connect(stack.temporal_address)
        summary = await asyncio.wait_for(
            temporal.get_workflow_handle(workflow_id).result(), timeout=120
        )
        assert summary["failed"] == 0, summary

        after = await identities()
        for name in CLIENTS:
            assert after[name]["pending"] == 0 and after[name]["synced"] == RECORDS, after[name]
            # Each record acknowledged once: the dead worker's held acknowledge marked nothing.
            assert after[name]["requests"].get("acknowledged_records") == RECORDS, after[name]
        for name in SLOW_ACK:
            assert after[name]["requests"].get("acknowledge_abandoned") == 1, after[name]

    rows = stored_rows(stack)
    for name in CLIENTS:
        expected = sorted(f"{name}-{n:06d}" for n in range(1, RECORDS + 1))
        assert sorted(rows[name]["ids"]) == expected, name
        # Counted once, though the slow-acknowledge clients' records were stored twice.
        assert rows[name]["stored_count"] == RECORDS, (name, rows[name])
        assert rows[name]["items"] == RECORDS, (name, rows[name])
