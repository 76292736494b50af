"""Media jobs end to end: API → Temporal → worker → emulator → webhooks → storage → API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import httpx
import pytest

from core.contracts import media_job_workflow_id
from providers import standard_webhooks
from providers.replicate import EMULATOR_TOKEN, EMULATOR_WEBHOOK_SECRET
from tests.e2e.conftest import E2E, wait_for_status
from tests.e2e.webhook_urls import hook_url

pytestmark = pytest.mark.e2e

TERMINAL = {"succeeded", "failed", "canceled"}
EMULATOR_AUTH = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}


async def create(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("kind", "generation")
    body.setdefault("input", {"prompt": "a red fox in the snow"})
    response = await api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "queued"
    return job


async def wait_job(
    api: httpx.AsyncClient, job_id: str, statuses: set[str] = TERMINAL, within: float = 60
) -> dict[str, Any]:
    return await wait_for_status(api, f"/v1/jobs/{job_id}", statuses, within)


async def prediction(e2e: E2E, job: dict[str, Any]) -> dict[str, Any]:
    async with e2e.emulator() as emulator:
        response = await emulator.get(
            f"/v1/predictions/{job['provider_job_id']}",
            headers=EMULATOR_AUTH,
        )
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data


async def all_predictions(e2e: E2E) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with e2e.emulator() as emulator:
        url: str | None = "/v1/predictions"
        while url:
            page = (await emulator.get(url, headers=EMULATOR_AUTH)).json()
            found += page["results"]
            url = page["next"]
    return found


async def test_generation_via_webhook_is_stored_and_readable(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "num_outputs": 2})
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded", done
        assert done["webhook_count"] >= 1
        assert [o["key"] for o in done["outputs"]] == [
            f"generated/alice/{job['id']}_0.png",
            f"generated/alice/{job['id']}_1.png",
        ]
        assert done["storage_provider"] == ("s3" if e2e.variant == "postgres-s3" else "local")
        stored = await api.get(f"/v1/jobs/{job['id']}/outputs/0", follow_redirects=True)
        assert stored.status_code == 200
        assert stored.content.startswith(b"\x89PNG")
        assert hashlib.sha256(stored.content).hexdigest() == done["outputs"][0]["sha256"]
    # The workflow is findable in the web UI by its search attributes.
    query = (
        "AutosyncUser = 'alice' AND AutosyncStatus = 'succeeded' AND AutosyncKind = 'generation'"
    )
    ids = [wf.id async for wf in e2e.temporal.list_workflows(query)]
    for _ in range(50):
        if media_job_workflow_id(job["id"]) in ids:
            break
        await asyncio.sleep(0.2)  # visibility is eventually consistent
        ids = [wf.id async for wf in e2e.temporal.list_workflows(query)]
    assert media_job_workflow_id(job["id"]) in ids


async def test_every_webhook_dropped_finishes_by_polling(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": {"drop_webhooks": True}})
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded"
        assert done["webhook_count"] == 0 and done["poll_count"] >= 1
        assert len(done["outputs"]) == 1


async def test_duplicated_and_reordered_webhooks_give_one_record(e2e: E2E) -> None:
    faults = {"duplicate_webhooks": 2, "reorder_webhooks": True}
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": faults})
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded"
        assert len(done["outputs"]) == 1
        # late duplicates after the end are acknowledged and ignored
        await asyncio.sleep(1.0)
        again = (await api.get(f"/v1/jobs/{job['id']}")).json()
        assert again["status"] == "succeeded" and again["outputs"] == done["outputs"]


async def test_cancel_while_starting_reaches_provider(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": {"stay_starting": True}})
        await wait_job(api, job["id"], {"submitted"})
        response = await api.post(f"/v1/jobs/{job['id']}/cancel", json={"reason": "oops"})
        assert response.status_code == 202
        done = await wait_job(api, job["id"])
        assert done["status"] == "canceled"
        assert (await prediction(e2e, done))["status"] == "canceled"
        again = await api.post(f"/v1/jobs/{job['id']}/cancel")
        assert again.status_code == 409


async def test_cancel_while_processing_reaches_provider(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": {"processing_seconds": 60}})
        await wait_job(api, job["id"], {"processing"}, within=30)
        assert (await api.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 202
        done = await wait_job(api, job["id"])
        assert done["status"] == "canceled"
        assert (await prediction(e2e, done))["status"] == "canceled"


async def test_cancel_while_storing_stops_the_copy(e2e: E2E) -> None:
    faults = {"file_delay_seconds": 30}
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": faults})
        await wait_job(api, job["id"], {"storing"}, within=30)
        assert (await api.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 202
        done = await wait_job(api, job["id"], within=20)
        assert done["status"] == "canceled"
        assert done["outputs"] == []
        # the provider job had finished already: nothing to cancel there
        assert (await prediction(e2e, done))["status"] == "succeeded"


async def test_provider_failure_fails_the_job(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": {"fail": "NSFW content"}})
        done = await wait_job(api, job["id"])
        assert done["status"] == "failed"
        assert done["error"] == "NSFW content"
        assert done["outputs"] == []


async def test_rate_limited_submit_waits_and_succeeds(e2e: E2E) -> None:
    faults = {"rate_limits": 2, "retry_after_seconds": 1}
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": faults})
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded"
    async with e2e.emulator() as emulator:
        stats = (await emulator.get("/_emulator/stats")).json()
    assert json.dumps(stats).count("429") >= 1


async def test_output_expired_before_copy_fails_clearly(e2e: E2E) -> None:
    async with e2e.api() as api:
        faults = {"file_ttl_seconds": 0, "drop_webhooks": True}
        job = await create(api, input={"prompt": "fox", "_emulator": faults})
        done = await wait_job(api, job["id"])
        assert done["status"] == "failed"
        assert "expired" in done["error"] or "removed" in done["error"]


async def test_training_records_its_model_version(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(
            api,
            kind="training",
            input={"destination": "autosync/alice-my-lora", "input_images": "https://x/y.zip"},
        )
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded", done
        assert done["output_data"]["version"].startswith("autosync/alice-my-lora:")
        # Its weights are stored like any output (tests/e2e/test_store_reliability.py).
        assert [o["key"] for o in done["outputs"]] == [f"trainings/alice/{job['id']}_0.tar"]


async def test_worker_killed_mid_job_finishes_once(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": {"processing_seconds": 3}})
        await wait_job(api, job["id"], {"processing", "submitted"})
        e2e.stack.kill_worker()
        await asyncio.sleep(1.0)
        e2e.stack.start_worker()
        done = await wait_job(api, job["id"], within=90)
        assert done["status"] == "succeeded"
        assert len(done["outputs"]) == 1
    webhook_urls = [p.get("webhook") or "" for p in await all_predictions(e2e)]
    assert sum(job["id"] in url for url in webhook_urls) == 1  # submitted exactly once


async def test_another_users_job_is_invisible(e2e: E2E) -> None:
    async with e2e.api("alice") as alice, e2e.api("bob") as bob, e2e.api("admin") as admin:
        job = await create(alice)
        assert (await bob.get(f"/v1/jobs/{job['id']}")).status_code == 404
        assert (await bob.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 404
        assert job["id"] not in [j["id"] for j in (await bob.get("/v1/jobs")).json()["items"]]
        assert (await admin.get(f"/v1/jobs/{job['id']}")).status_code == 200
        assert (
            await alice.get("/v1/jobs", headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        await wait_job(alice, job["id"])


async def test_bad_input_is_a_422_that_says_what_to_fix(e2e: E2E) -> None:
    async with e2e.api() as api:
        cases = [
            ({"kind": "painting", "input": {"prompt": "x"}}, "kind"),
            ({"kind": "generation", "input": {}}, "input.prompt"),
            ({"kind": "upscale", "input": {"prompt": "x"}}, "input.image"),
            ({"kind": "training", "input": {"destination": "nope"}}, "owner/model"),
            ({"kind": "generation", "input": {"prompt": "x"}, "model": "bad model"}, "owner/name"),
            ({"kind": "generation", "input": {"prompt": "x"}, "provider": "acme"}, "acme"),
        ]
        for body, hint in cases:
            response = await api.post("/v1/jobs", json=body)
            assert response.status_code == 422, body
            assert hint in response.text, (hint, response.text)
        assert (await api.get("/v1/jobs?cursor=%%%")).status_code == 422


async def test_list_filters_and_pages_with_a_cursor(e2e: E2E) -> None:
    async with e2e.api("bob") as bob:
        nodes = [{"id": f"n{i}", "type": "image", "data": {}} for i in range(3)]
        project = (await bob.post("/v1/projects", json={"content": {"nodes": nodes}})).json()
        ids = [
            (await create(bob, project_id=project["id"], node_id=f"n{i}"))["id"] for i in range(3)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"project_id": project["id"], "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await bob.get("/v1/jobs", params=params)).json()
            seen += [j["id"] for j in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == list(reversed(ids))
        for job_id in ids:
            await wait_job(bob, job_id)
        succeeded = (
            await bob.get("/v1/jobs", params={"status": "succeeded", "kind": "generation"})
        ).json()
        assert set(ids) <= {j["id"] for j in succeeded["items"]}


async def test_a_finished_job_fills_in_its_project_node(e2e: E2E) -> None:
    async with e2e.api("alice") as alice, e2e.api("bob") as bob:
        content = {"nodes": [{"id": "hero", "type": "image", "data": {"loading": True}}],
                   "edges": []}  # fmt: skip
        project = (await alice.post("/v1/projects", json={"name": "p", "content": content})).json()
        for body, hint in (
            ({"project_id": project["id"], "node_id": "nope"}, "node_id"),
            ({"node_id": "hero"}, "project_id"),
            ({"project_id": "missing", "node_id": "hero"}, "project_id"),
        ):
            response = await alice.post("/v1/jobs", json={"kind": "generation",
                                        "input": {"prompt": "x"}, **body})  # fmt: skip
            assert response.status_code == 422 and hint in response.text, response.text
        job = await create(alice, project_id=project["id"], node_id="hero")
        await wait_job(alice, job["id"])
        node = (await alice.get(f"/v1/projects/{project['id']}")).json()["content"]["nodes"][0]
        assert node["data"]["generated"] == {
            "url": f"/v1/jobs/{job['id']}/outputs/0",
            "type": "image",
        }
        assert node["data"]["status"] == "completed" and node["data"]["loading"] is False
        assert node["data"]["updatedAt"]
        # another user's project is not there for them
        assert (await bob.get(f"/v1/projects/{project['id']}")).status_code == 404
        assert (await bob.post("/v1/jobs", json={"kind": "generation", "input": {"prompt": "x"},
                "project_id": project["id"], "node_id": "hero"})).status_code == 422  # fmt: skip


def signed(
    body: bytes, *, secret: str = EMULATOR_WEBHOOK_SECRET, ts: int | None = None
) -> dict[str, str]:
    timestamp = int(time.time()) if ts is None else ts
    return {
        "webhook-id": "msg_test",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_webhooks.sign(secret, "msg_test", timestamp, body),
        "content-type": "application/json",
    }


async def test_webhook_bridge_rejects_bad_signatures(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "fox", "_emulator": {"stay_starting": True}})
        running = await wait_job(api, job["id"], {"submitted"})
        body = json.dumps(
            {
                "id": running["provider_job_id"],
                "status": "succeeded",
                "output": ["http://127.0.0.1:1/x.png"],
            }
        ).encode()
        url = hook_url(e2e, "replicate", job["id"])
        other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
        for headers in (
            {"content-type": "application/json"},  # missing
            signed(body, secret=other),  # wrong key
            signed(body, ts=int(time.time()) - 600),  # stale
            {**signed(body), "webhook-signature": "v1,AAAA"},  # forged
        ):
            response = await api.post(url, content=body, headers=headers)
            assert response.status_code == 401, response.text
        tampered = body.replace(b"succeeded", b"failed")
        assert (await api.post(url, content=tampered, headers=signed(body))).status_code == 401
        unknown = await api.post(
            hook_url(e2e, "replicate", "nope"), content=body, headers=signed(body)
        )
        assert unknown.status_code == 404
        untokened = await api.post(
            hook_url(e2e, "replicate", job["id"], token=None), content=body, headers=signed(body)
        )
        assert untokened.status_code == 401
        huge = b"x" * (8 * 1024 * 1024 + 10)
        assert (await api.post(url, content=huge, headers=signed(huge))).status_code == 413
        # nothing reached the workflow: still waiting, no webhook counted from us
        state = await wait_job(api, job["id"], {"submitted"})
        assert state["status"] == "submitted"
        await api.post(f"/v1/jobs/{job['id']}/cancel")
        finished = await wait_job(api, job["id"])
        late = await api.post(url, content=body, headers=signed(body))
        assert late.status_code == 200 and late.json()["status"] == "ignored"
        assert finished["status"] == "canceled"
