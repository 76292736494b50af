"""Pull-sync over REST: the real app (lifespan, SQLite), a real Temporal dev server, a worker
with the real activities in this process, and three emulated clients in the emulator process.

Stop, start and set-interval are checked against Temporal's own description of the schedule.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.pull_sync import PullConfig, PullSyncActivities, client_fetcher
from api.auth import Caller
from api.main import create_app
from api.routes.events import StreamError, _authorize
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Event
from core.pull_contracts import CycleSummary
from core.pull_schedules import CYCLE_SCHEDULE_ID
from core.settings import Settings
from devstack.processes import temporal_cli_path
from tests.errors import error_of
from tests.pull_sync.support import add_records, emulate, emulator_client
from workflows.pull_sync import PullSyncCleanupWorkflow, PullSyncCycleWorkflow

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
async def temporal() -> AsyncIterator[WorkflowEnvironment]:
    # The wheel's CLI: nothing is downloaded.
    cli = temporal_cli_path()
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=cli)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
async def app(tmp_path: Path, temporal: WorkflowEnvironment) -> AsyncIterator[FastAPI]:
    """The API and a pull-sync worker on a task queue of the test's own."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        secret_key="test-secret-key-0123456789",
        bootstrap_api_keys="admin-key=root:admin,alice-key=alice,bob-key=bob",
        temporal_address=temporal.client.service_client.config.target_host,
        storage_dir=str(tmp_path / "storage"),
        pull_sync_task_queue=f"pull-{uuid.uuid4()}",
        pull_sync_timeout_seconds=2,
        pull_sync_self_registration=True,
        api_rate_limit_per_second=0,
    )
    application = create_app(settings)
    engine = make_engine(url)
    async with (
        application.router.lifespan_context(application),
        client_fetcher(settings) as fetcher,
    ):
        acts = PullSyncActivities(
            sessions=make_sessionmaker(engine), fetcher=fetcher,
            config=PullConfig.from_settings(settings),
        )  # fmt: skip
        async with Worker(
            temporal.client,
            task_queue=settings.pull_sync_task_queue,
            workflows=[PullSyncCycleWorkflow, PullSyncCleanupWorkflow],
            activities=[acts.plan, acts.pull_batch, acts.finish_cycle, acts.cleanup],
        ):
            yield application
    await engine.dispose()


def api(app: FastAPI, key: str = "admin-key") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


SEED_REGISTER = "/api/v1/pull-sync/register-client"


def schedule_interval(status: dict[str, Any]) -> float:
    """The cycle schedule's interval as the scheduler status shows it (a setting, not a timing)."""
    value: float = status["interval_seconds"]
    return value


async def register(
    client: httpx.AsyncClient,
    url: str,
    user: str | None = None,
    path: str = "/v1/pull-sync/clients",
) -> httpx.Response:
    body: dict[str, object] = {"client_url": url, "client_type": "web", "capabilities": ["capture"]}
    if user is not None:
        body["user_id"] = user
    return await client.post(path, json=body)


async def test_registry_owners_urls_and_the_seed_aliases(
    app: FastAPI, control: httpx.Client, pull_client_url: str
) -> None:
    emulate(control, "a1", 0)
    async with api(app, "alice-key") as alice, api(app, "bob-key") as bob, api(app) as admin:
        created = await register(alice, f"{pull_client_url}/c/a1/")
        assert created.status_code == 201, created.text
        client = created.json()
        assert client["user_id"] == "alice" and client["url"] == f"{pull_client_url}/c/a1"
        assert client["active"] and client["consecutive_failures"] == 0
        assert (await register(alice, f"{pull_client_url}/c/a1")).status_code == 200
        assert (await register(alice, f"{pull_client_url}/c/x", user="bob")).status_code == 403
        assert (await register(bob, f"{pull_client_url}/c/a1")).status_code == 409
        for url, code in [
            ("http://10.0.0.7:3001", "client_url_refused"),
            ("http://169.254.169.254/", "client_url_refused"),
            (f"http://u:p@{pull_client_url.removeprefix('http://')}", "client_url_refused"),
            ("file:///etc/passwd", "client_url_refused"),
        ]:
            refused = await register(alice, url)
            assert refused.status_code == 422 and error_of(refused)["code"] == code, refused.text
        assert (await bob.get("/v1/pull-sync/clients")).json()["total"] == 0
        assert (await admin.get("/v1/pull-sync/clients")).json()["total"] == 1
        assert (await bob.delete(f"/v1/pull-sync/clients/{client['id']}")).status_code == 404
        # The seed's paths.
        seed = await register(
            bob, f"{pull_client_url}/c/b1", user="bob", path="/api/v1/pull-sync/register-client"
        )
        assert seed.status_code == 200 and seed.json()["user_id"] == "bob"
        listed = (await bob.get("/api/v1/pull-sync/registered-clients")).json()
        assert [c["url"] for c in listed["clients"]] == [f"{pull_client_url}/c/b1"]
        gone = await bob.delete("/api/v1/pull-sync/unregister-client/bob")
        assert gone.json() == {"user_id": "bob", "removed": 1}
        assert (await bob.delete("/api/v1/pull-sync/unregister-client/bob")).status_code == 404
        assert (await alice.delete(f"/v1/pull-sync/clients/{client['id']}")).status_code == 204
        assert (await admin.get("/v1/pull-sync/clients")).json()["total"] == 0


async def test_sync_all_recent_background_status_and_ranking(
    app: FastAPI, control: httpx.Client, pull_client_url: str
) -> None:
    async with api(app) as admin, api(app, "alice-key") as alice:
        for n, name in enumerate(("p1", "p2", "p3")):
            emulate(control, name, 3 + n)
            response = await register(admin, f"{pull_client_url}/c/{name}", user=f"u-{name}")
            assert response.status_code == 201
        forbidden = await alice.post("/v1/pull-sync/sync-all")
        assert forbidden.status_code == 403 and error_of(forbidden)["code"] == "forbidden"
        result = (await admin.post("/v1/pull-sync/sync-all")).json()
        assert (result["clients"], result["ok"], result["failed"], result["stored"]) == (
            3,
            3,
            0,
            12,
        )
        assert all(emulator_client(control, n)["pending"] == 0 for n in ("p1", "p2", "p3"))
        add_records(control, "p2", 2)
        recent = (await admin.post("/v1/pull-sync/sync-recent")).json()
        assert (recent["skipped"], recent["stored"]) == (2, 2)
        add_records(control, "p3", 1)
        started = await admin.post("/v1/pull-sync/sync-all-background")
        assert started.status_code == 202
        workflow_id = started.json()["workflow_id"]
        handle = app.state.temporal.get_workflow_handle(workflow_id, result_type=CycleSummary)
        assert (await handle.result()).stored == 1
        status = (await admin.get("/v1/pull-sync/status")).json()
        assert status["clients"] == {"total": 3, "active": 3, "inactive": 0}
        assert status["records_stored"] == 15 and status["pending"] == 0
        assert status["pulls_24h"]["success_rate"] == 1.0
        ranking = (await alice.get("/v1/pull-sync/ranking")).json()["ranking"]
        assert [(r["user_id"], r["records"]) for r in ranking] == [
            ("u-p2", 6), ("u-p3", 6), ("u-p1", 3)
        ]  # fmt: skip
    async with app.state.sessions() as session:
        topics = set((await session.scalars(select(Event.topic))).all())
    assert {"pull-sync:clients", "pull-sync:cycles"} <= topics


async def test_stop_start_and_set_interval_are_what_temporal_describes(app: FastAPI) -> None:
    temporal: Client = app.state.temporal
    async with api(app) as admin, api(app, "alice-key") as alice:
        assert (await alice.post("/v1/pull-sync/scheduler/stop")).status_code == 403
        before = (await admin.get("/v1/pull-sync/scheduler/status")).json()
        if before["exists"]:  # an earlier test of this module's server left it
            await temporal.get_schedule_handle(CYCLE_SCHEDULE_ID).delete()
            assert (await admin.post("/v1/pull-sync/scheduler/stop")).status_code == 404
        started = (await admin.post("/v1/pull-sync/scheduler/start")).json()
        assert started["exists"] and started["running"] and schedule_interval(started) == 30
        handle = temporal.get_schedule_handle(CYCLE_SCHEDULE_ID)
        assert not (await handle.describe()).schedule.state.paused

        retimed = await admin.post("/v1/pull-sync/scheduler/set-interval", json={"seconds": 45})
        assert schedule_interval(retimed.json()) == 45
        described = await handle.describe()
        assert described.schedule.spec.intervals[0].every == timedelta(minutes=0.75)
        assert not described.schedule.state.paused

        stopped = (await admin.post("/v1/pull-sync/scheduler/stop")).json()
        assert stopped["running"] is False
        assert stopped["next_runs"] == []  # not the times it would run at, were it running
        described = await handle.describe()
        assert described.schedule.state.paused and "root" in (described.schedule.state.note or "")
        # Re-timed while stopped, it stays stopped.
        await admin.post("/v1/pull-sync/scheduler/set-interval", json={"seconds": 60})
        described = await handle.describe()
        assert described.schedule.state.paused
        assert described.schedule.spec.intervals[0].every == timedelta(minutes=1)

        again = (await admin.post("/v1/pull-sync/scheduler/start")).json()
        assert again["running"] and schedule_interval(again) == 60 and again["next_runs"]
        assert not (await handle.describe()).schedule.state.paused
        bad = await admin.post("/v1/pull-sync/scheduler/set-interval", json={"seconds": 0})
        assert bad.status_code == 422 and error_of(bad)["code"] == "validation_error"
        await handle.delete()
        await asyncio.sleep(0)


async def test_pull_sync_topics_are_for_admins(app: FastAPI) -> None:
    sessions = app.state.sessions
    admin = Caller(user_id="root", is_admin=True, key_id="0" * 16)
    alice = Caller(user_id="alice", is_admin=False, key_id="1" * 16)
    assert (await _authorize(sessions, admin, ["pull-sync:*"])).matches("pull-sync:clients")
    with pytest.raises(StreamError) as refused:
        await _authorize(sessions, alice, ["pull-sync:clients"])
    assert refused.value.status_code == 403


async def test_only_admins_register_clients_unless_users_may_register_their_own(
    app: FastAPI, pull_client_url: str
) -> None:
    app.state.settings.pull_sync_self_registration = False
    try:
        async with api(app, "alice-key") as alice, api(app) as admin:
            refused = await register(alice, f"{pull_client_url}/c/self")
            assert refused.status_code == 403, refused.text
            assert "admin key" in error_of(refused)["message"]
            seed = await register(alice, f"{pull_client_url}/c/self", path=SEED_REGISTER)
            assert seed.status_code == 403, seed.text
            made = await register(admin, f"{pull_client_url}/c/self", user="alice")
            assert made.status_code == 201 and made.json()["user_id"] == "alice"
    finally:
        app.state.settings.pull_sync_self_registration = True
