"""Live events end to end: the worker's and the API's writes reach SSE and WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
import websockets.exceptions

from core.contracts import JOB_STATUS_RANK, JobStatus
from devstack.processes import ManagedProcess, free_port
from tests.e2e.conftest import ARTIFACTS, E2E, KEYS
from tests.e2e.test_media_jobs import create, wait_job
from tests.e2e.test_sync_runs import start_run, wait_run
from tests.errors import error_message

pytestmark = pytest.mark.e2e

Event = dict[str, Any]


async def last_event_id(e2e: E2E) -> int:
    """The newest event id visible to admins right now (0 when there is none)."""
    async with e2e.api("admin") as api:
        response = await api.get("/v1/events/latest")
        assert response.status_code == 200, response.text
        latest: int = response.json()["id"]
        return latest


async def stream_token(e2e: E2E, user: str) -> str:
    """A token for `user`'s stream, as a browser gets one before opening EventSource/WebSocket."""
    async with e2e.api(user) as api:
        response = await api.post("/v1/stream-tokens")
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token


async def sse_events(
    base_url: str,
    key: str,
    *,
    topics: list[str],
    after: int | None = None,
    last_event_id: int | None = None,
    until: Callable[[list[Event]], bool],
    within: float = 60.0,
) -> list[Event]:
    """Read `/v1/events` until `until(events)` holds; raises after `within` seconds."""
    params = httpx.QueryParams([("topic", t) for t in topics])
    if after is not None:
        params = params.add("after", str(after))
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[Event] = []

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=None) as client,
            client.stream("GET", "/v1/events", params=params, headers=headers) as response,
        ):
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            frame: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    frame[name] = value.removeprefix(" ")
                    continue
                if "data" in frame:
                    event = json.loads(frame["data"])
                    assert frame["id"] == str(event["id"]) and frame["event"] == event["type"]
                    events.append(event)
                    if until(events):
                        return
                frame = {}

    try:
        await asyncio.wait_for(read(), within)
    except TimeoutError:
        raise AssertionError(f"stream ended early or too slowly; got {events}") from None
    return events


def statuses(events: list[Event], job_id: str) -> list[str]:
    return [e["payload"]["status"] for e in events if e["payload"].get("id") == job_id]


def finished(job_id: str) -> Callable[[list[Event]], bool]:
    return lambda events: bool({"succeeded", "failed", "canceled"} & set(statuses(events, job_id)))


async def test_every_state_change_of_a_job_is_an_event_in_order(e2e: E2E) -> None:
    start = await last_event_id(e2e)
    async with e2e.api("alice") as api:
        job = await create(api)
        await wait_job(api, job["id"])
    events = await sse_events(
        e2e.stack.api_url, KEYS["alice"], topics=["user:alice"], after=start,
        until=finished(job["id"]),
    )  # fmt: skip
    seen = statuses(events, job["id"])
    assert seen[0] == "queued" and seen[-1] == "succeeded"
    assert {"submitted", "storing"} <= set(seen)  # `processing` too, unless a webhook skipped it
    ranks = [JOB_STATUS_RANK[JobStatus(s)] for s in seen]
    assert ranks == sorted(ranks)  # never backwards
    ids = [e["id"] for e in events]
    assert ids == sorted(set(ids))
    assert all(e["topic"] == "user:alice" and e["type"] == f"job.{e['payload']['status']}"
               for e in events)  # fmt: skip
    done = [e for e in events if e["payload"].get("status") == "succeeded"][-1]
    assert done["payload"]["outputs"], "succeeded only with its outputs stored"


async def test_reconnecting_with_last_event_id_misses_nothing_and_repeats_nothing(
    e2e: E2E,
) -> None:
    start = await last_event_id(e2e)
    async with e2e.api("alice") as api:
        jobs = [await create(api) for _ in range(3)]
        for job in jobs:
            await wait_job(api, job["id"])
    every = await sse_events(
        e2e.stack.api_url, KEYS["alice"], topics=["user:alice"], after=start,
        until=lambda evs: all(finished(j["id"])(evs) for j in jobs),
    )  # fmt: skip
    # First connection: a few events, then the client goes away...
    first = await sse_events(
        e2e.stack.api_url, KEYS["alice"], topics=["user:alice"], after=start,
        until=lambda evs: len(evs) >= 4,
    )  # fmt: skip
    # ...and comes back with the id of the last event it saw.
    rest = await sse_events(
        e2e.stack.api_url, KEYS["alice"], topics=["user:alice"],
        last_event_id=first[-1]["id"], until=lambda evs: len(first) + len(evs) >= len(every),
    )  # fmt: skip
    assert [e["id"] for e in first + rest] == [e["id"] for e in every]


async def test_two_subscribers_of_a_topic_both_receive_sse_and_websocket(e2e: E2E) -> None:
    start = await last_event_id(e2e)
    ws_url = e2e.stack.api_url.replace("http://", "ws://")
    received: list[Event] = []

    async def websocket_client(job_ids: list[str]) -> None:
        token = await stream_token(e2e, "bob")
        url = f"{ws_url}/v1/ws?topic=user:bob&after={start}&token={token}"
        async with websockets.connect(url) as ws:
            while not (job_ids and finished(job_ids[0])(received)):
                received.append(json.loads(await ws.recv()))

    job_ids: list[str] = []
    ws_task = asyncio.create_task(websocket_client(job_ids))
    async with e2e.api("bob") as api:
        job = await create(api)
        job_ids.append(job["id"])
        await wait_job(api, job["id"])
    sse = await sse_events(
        e2e.stack.api_url, KEYS["bob"], topics=["user:bob"], after=start,
        until=finished(job["id"]),
    )  # fmt: skip
    await asyncio.wait_for(ws_task, 30)
    assert [e["id"] for e in received] == [e["id"] for e in sse]


async def test_a_user_cannot_follow_another_users_topics(e2e: E2E) -> None:
    async with e2e.api("alice") as alice, e2e.api("bob") as bob:
        project = (await bob.post("/v1/projects", json={"name": "bob's"})).json()
        for topic, code in (
            ("user:bob", 403),
            (f"project:{project['id']}", 404),
            ("sync-run:*", 403),
            ("jobs", 422),
        ):
            response = await alice.get("/v1/events", params={"topic": topic})
            assert response.status_code == code, (topic, response.text)
            assert topic.split(":")[0] in error_message(response)
    async with httpx.AsyncClient(base_url=e2e.stack.api_url, timeout=30.0) as browser:
        # A key in the URL no longer opens anything; a made-up token neither.
        for params in ({"access_token": KEYS["alice"]}, {"token": "nope"}):
            assert (await browser.get("/v1/events", params=params)).status_code == 401, params
    ws_url = e2e.stack.api_url.replace("http://", "ws://")
    token = await stream_token(e2e, "alice")
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(f"{ws_url}/v1/ws?topic=user:bob&token={token}") as ws:
            await ws.recv()
    assert refused.value.response.status_code == 403


async def test_a_sync_run_streams_its_status_modules_and_logs(e2e: E2E) -> None:
    start = await last_event_id(e2e)
    async with e2e.api("admin") as api:
        run = await start_run(api, month="2024-06", modules=["vendas", "estoque"])
        final = await wait_run(api, run["id"])
    assert final["status"] == "DONE"
    topic = f"sync-run:{run['id']}"
    events = await sse_events(
        e2e.stack.api_url, KEYS["admin"], topics=["sync-run:*"], after=start,
        until=lambda evs: any(e["type"] == "sync_run.done" and e["topic"] == topic for e in evs),
    )  # fmt: skip
    mine = [e for e in events if e["topic"] == topic]
    types = [e["type"] for e in mine]
    assert types[0] == "sync_run.queued" and types[-1] == "sync_run.done"
    assert types.index("sync_run.running") < types.index("sync_run.module")
    assert "sync_run.log" in types
    last = {}
    for e in mine:
        if e["type"] == "sync_run.module":
            last[e["payload"]["module"]] = e["payload"]["progress"]
    assert {m: p["status"] for m, p in last.items()} == {"vendas": "done", "estoque": "done"}
    assert {m: p["processed"] for m, p in last.items()} == {
        m: final["modules"][m]["processed"] for m in ("vendas", "estoque")
    }


async def test_a_projects_node_update_is_an_event_of_its_topic(e2e: E2E) -> None:
    async with e2e.api("alice") as api:
        content = {"nodes": [{"id": "n1", "type": "image", "data": {}}]}
        project = (await api.post("/v1/projects", json={"content": content})).json()
        job = await create(api, project_id=project["id"], node_id="n1")
        await wait_job(api, job["id"])
    events = await sse_events(
        e2e.stack.api_url, KEYS["alice"], topics=[f"project:{project['id']}"], after=0,
        until=lambda evs: bool(evs),
    )  # fmt: skip
    assert events[0]["type"] == "project.node_updated"
    assert events[0]["payload"]["node"]["data"]["generated"]["type"] == "image"
    assert events[0]["payload"]["job_id"] == job["id"]


@asynccontextmanager
async def second_api(e2e: E2E) -> AsyncIterator[str]:
    """Another API process on the same database and Temporal, as a scaled-out deployment."""
    port = free_port()
    proc = ManagedProcess(
        "api-2",
        [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        log_dir=ARTIFACTS / "e2e-logs" / e2e.variant,
        env=e2e.stack.app_env(),
    )  # fmt: skip
    try:
        proc.start()
        await asyncio.to_thread(proc.wait_http, f"http://127.0.0.1:{port}/v1/health")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


async def test_events_written_by_the_worker_reach_a_client_of_another_api_process(
    e2e: E2E,
) -> None:
    if e2e.variant != "postgres-s3":
        pytest.skip("LISTEN/NOTIFY across processes is the PostgreSQL path")
    async with second_api(e2e) as other:
        start = await last_event_id(e2e)

        def succeeded(events: list[Event]) -> bool:
            return any(e["payload"]["status"] == "succeeded" for e in events)

        reader = asyncio.create_task(
            sse_events(other, KEYS["alice"], topics=["user:alice"], until=succeeded)
        )
        await asyncio.sleep(0.5)  # subscribed from now on: only live events reach it
        async with e2e.api("alice") as api:  # the first API process takes the job
            job = await create(api)
            await wait_job(api, job["id"])
        events = await asyncio.wait_for(reader, 60)
    assert statuses(events, job["id"])[-1] == "succeeded"
    assert all(e["id"] > start for e in events)
