"""Bulk cancel and rerun end to end: a batch matched by ids or filter, walked by its workflow,
each cancel reaching the provider, progress on the batch's live topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import E2E, KEYS, LOCAL_ONLY
from tests.e2e.test_events import sse_events
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e

# A provider job that stays `processing` until it is cancelled (longer than any test, even
# when making 500 of them takes many minutes).
HELD = {"_emulator": {"processing_seconds": 7200}}
IN_FLIGHT = {"queued", "submitted", "processing"}


async def wait_batch(api: httpx.AsyncClient, batch_id: str, within: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        response = await api.get(f"/v1/jobs/batches/{batch_id}")
        assert response.status_code == 200, response.text
        batch: dict[str, Any] = response.json()
        if batch["status"] != "running":
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} never finished: {batch}")
        await asyncio.sleep(0.3)


async def get_json(api: httpx.AsyncClient, path: str) -> dict[str, Any]:
    """GET `path` (retried when the connection drops, as `create_safely`)."""
    for attempt in range(5):
        try:
            response = await api.get(path)
        except httpx.TransportError:
            if attempt == 4:
                raise
            await asyncio.sleep(1.0)
            continue
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
    raise AssertionError("unreachable")


async def statuses(api: httpx.AsyncClient, ids: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(ids), 50):
        jobs = await asyncio.gather(
            *(get_json(api, f"/v1/jobs/{i}") for i in ids[start : start + 50])
        )
        found |= {job["id"]: job["status"] for job in jobs}
    return found


async def wait_all(
    api: httpx.AsyncClient, ids: list[str], wanted: set[str], within: float = 180
) -> dict[str, str]:
    deadline = time.monotonic() + within
    while True:
        now = await statuses(api, ids)
        if set(now.values()) <= wanted:
            return now
        if time.monotonic() > deadline:
            left = {i: s for i, s in now.items() if s not in wanted}
            raise AssertionError(
                f"{len(left)} jobs never reached {wanted}: {list(left.items())[:5]}"
            )
        await asyncio.sleep(1.0)


async def provider_jobs(e2e: E2E) -> dict[str, list[dict[str, Any]]]:
    async with e2e.emulator() as emulator:
        listed: dict[str, list[dict[str, Any]]] = (await emulator.get("/_emulator/jobs")).json()[
            "jobs"
        ]
        return listed


async def wait_submitted(e2e: E2E, ids: list[str], within: float = 180) -> None:
    """Until each job has its provider job (a cancel then has something to reach)."""
    deadline = time.monotonic() + within
    while True:
        listed = await provider_jobs(e2e)
        missing = [i for i in ids if not listed.get(i)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} jobs never reached the provider")
        await asyncio.sleep(1.0)


async def create_safely(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """Create a job with an Idempotency-Key, retried when the connection drops (a loaded
    machine closes kept-alive connections under the client's feet)."""
    key = uuid.uuid4().hex
    for attempt in range(5):
        try:
            response = await api.post(
                "/v1/jobs", json={"kind": "generation", **body}, headers={"Idempotency-Key": key}
            )
        except httpx.TransportError:
            if attempt == 4:
                raise
            await asyncio.sleep(1.0)
            continue
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id
    raise AssertionError("unreachable")


async def make_jobs(api: httpx.AsyncClient, n: int, **body: Any) -> list[str]:
    ids: list[str] = []
    for start in range(0, n, 25):
        ids += await asyncio.gather(*(create_safely(api, body) for _ in range(min(25, n - start))))
    return ids


# 500 workflows at once take many minutes on a small shared machine (half an hour seen under
# a load of 20 on 2 cores): the waits are bounds for a hang, not expectations.
@pytest.mark.timeout(3600)
@LOCAL_ONLY
async def test_bulk_cancel_of_500_in_flight_jobs_reaches_the_provider_for_each(e2e: E2E) -> None:
    async with e2e.api() as api:
        ids = await make_jobs(api, 500, input={"prompt": "held", **HELD})
        await wait_submitted(e2e, ids, within=1500)
        response = await api.post("/v1/jobs/cancel", json={"ids": ids, "reason": "bulk test"})
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["matched"] == 500
        assert accepted["status_url"] == f"/v1/jobs/batches/{accepted['batch_id']}"
        assert response.headers["location"] == accepted["status_url"]
        batch = await wait_batch(api, accepted["batch_id"], within=1200)
        assert batch["status"] == "done", batch
        assert (batch["total"], batch["done"], batch["failed"], batch["skipped"]) == (
            500,
            500,
            0,
            0,
        )
        ended = await wait_all(api, ids, {"canceled"}, within=1500)
        assert len(ended) == 500
        one = (await api.get(f"/v1/jobs/{ids[0]}")).json()
        assert one["error"] == "bulk test"
    listed = await provider_jobs(e2e)
    for job_id in ids:
        made = listed[job_id]
        assert len(made) == 1, (job_id, made)  # one provider job each, cancelled there
        assert made[0]["canceled"] and made[0]["status"] == "canceled", (job_id, made)
    # The batch's progress on its live topic, ending with `batch.done`.
    events = await sse_events(
        e2e.stack.api_url, KEYS["alice"], topics=[accepted["topic"]], after=0,
        until=lambda evs: any(e["type"] == "batch.done" for e in evs),
    )  # fmt: skip
    types = [e["type"] for e in events]
    assert types[0] == "batch.running" and types[-1] == "batch.done"
    assert "batch.progress" in types
    done = [e["payload"]["done"] for e in events]
    assert done == sorted(done) and done[-1] == 500


async def test_bulk_by_filter_touches_only_the_matching_jobs(e2e: E2E) -> None:
    async with e2e.api() as api:
        project = (await api.post("/v1/projects", json={"name": "bulk"})).json()
        other = (await api.post("/v1/projects", json={"name": "kept"})).json()
        since = datetime.now(UTC).isoformat()
        held = {"input": {"prompt": "held", **HELD}}
        inside = await make_jobs(api, 4, project_id=project["id"], **held)
        outside = await make_jobs(api, 2, project_id=other["id"], **held)
        finished = await create(api, project_id=project["id"], input={"prompt": "quick"})
        await wait_job(api, finished["id"])
        await wait_submitted(e2e, inside + outside)
        response = await api.post(
            "/v1/jobs/cancel",
            json={"filter": {"project_id": project["id"], "created_after": since}},
        )
        assert response.status_code == 202, response.text
        assert response.json()["matched"] == 5
        batch = await wait_batch(api, response.json()["batch_id"])
        # The finished job is skipped, not an error.
        assert (batch["done"], batch["failed"], batch["skipped"]) == (4, 0, 1), batch
        assert batch["filter"]["project_id"] == project["id"]
        assert set((await wait_all(api, inside, {"canceled"})).values()) == {"canceled"}
        assert set((await statuses(api, outside)).values()) <= IN_FLIGHT
        assert (await api.get(f"/v1/jobs/{finished['id']}")).json()["status"] == "succeeded"

        # Rerun the cancelled ones, by filter: each gets a new job, linked to it.
        response = await api.post(
            "/v1/jobs/rerun",
            json={"filter": {"project_id": project["id"], "status": ["canceled"],
                             "created_after": since}},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        assert response.json()["matched"] == 4
        batch = await wait_batch(api, response.json()["batch_id"])
        assert (batch["done"], batch["failed"]) == (4, 0), batch
        listed = (await api.get("/v1/jobs", params={"project_id": project["id"]})).json()["items"]
        reruns = [j for j in listed if j["rerun_of"] is not None]
        assert sorted(j["rerun_of"] for j in reruns) == sorted(inside)
        assert all(j["input"] == {"prompt": "held", **HELD} for j in reruns)
        # Clean up: every job of both projects still running, in one batch of ids.
        running = [j["id"] for j in reruns] + outside
        response = await api.post("/v1/jobs/cancel", json={"ids": running})
        assert response.json()["matched"] == 6
        assert (await wait_batch(api, response.json()["batch_id"]))["done"] == 6
        await wait_all(api, running, {"canceled"})


async def test_a_non_admin_acts_only_on_their_own_jobs(e2e: E2E) -> None:
    async with e2e.api("alice") as alice, e2e.api("bob") as bob, e2e.api("admin") as admin:
        job = await create(alice, input={"prompt": "alice's", **HELD})
        # Another user's ids are not matched, and all_users is for admins.
        response = await bob.post("/v1/jobs/cancel", json={"ids": [job["id"]]})
        assert response.status_code == 202, response.text
        assert response.json()["matched"] == 0
        assert (await wait_batch(bob, response.json()["batch_id"]))["status"] == "done"
        for path in ("/v1/jobs/cancel", "/v1/jobs/rerun"):
            refused = await bob.post(path, json={"filter": {}, "all_users": True})
            assert refused.status_code == 403, refused.text
            assert "all_users" in refused.json()["error"]["message"]
        by_bob = await bob.post("/v1/jobs/rerun", json={"ids": [job["id"]]})
        assert by_bob.json()["matched"] == 0
        # bob can't read alice's batches nor follow them.
        mine = await alice.post("/v1/jobs/rerun", json={"ids": [job["id"]]})
        assert mine.json()["matched"] == 1
        assert (await bob.get(mine.json()["status_url"])).status_code == 404
        stream = await bob.get("/v1/events", params={"topic": mine.json()["topic"]})
        assert stream.status_code == 404
        assert (await admin.get(mine.json()["status_url"])).status_code == 200
        # An admin acts on alice's jobs only with all_users.
        own = await admin.post("/v1/jobs/cancel", json={"ids": [job["id"]]})
        assert own.json()["matched"] == 0
        everyone = await admin.post("/v1/jobs/cancel", json={"ids": [job["id"]], "all_users": True})
        assert everyone.json()["matched"] == 1
        assert (await wait_batch(admin, everyone.json()["batch_id"]))["done"] == 1
        assert (await wait_job(alice, job["id"]))["status"] == "canceled"
        rerun = await wait_batch(alice, mine.json()["batch_id"])
        assert rerun["done"] == 1
        await admin.post(
            "/v1/jobs/cancel",
            json={"filter": {"status": ["queued", "submitted", "processing"]}, "all_users": True},
        )


async def test_bulk_requests_are_checked(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api)
        bad: list[dict[str, Any]] = [
            {},
            {"ids": [job["id"]], "filter": {}},
            {"ids": []},
            {"ids": ["not a job id"]},
            {"filter": {"status": ["nope"]}},
            {"filter": {"created_after": "2026-01-02T00:00:00"}},  # no time zone
            {"filter": {"created_after": "2026-01-02T00:00:00Z",
                        "created_before": "2026-01-01T00:00:00Z"}},
            {"filter": {}, "colour": "red"},
            {"ids": [uuid.uuid4().hex for _ in range(5001)]},  # past BULK_MAX_JOBS
        ]  # fmt: skip
        for body in bad:
            for path in ("/v1/jobs/cancel", "/v1/jobs/rerun"):
                response = await api.post(path, json=body)
                assert response.status_code == 422, (path, body, response.text)
                assert response.json()["error"]["code"] == "validation_error"
        assert (await api.get(f"/v1/jobs/batches/{uuid.uuid4().hex}")).status_code == 404
