"""Limits at the API's edge, replayed as a hostile or unlucky client would hit them.

- a client retrying `POST /v1/jobs` after a timeout (the same Idempotency-Key, in a row and at
  once) gets one job, one workflow and one provider job; the key with another body is a 409;
- bodies over MAX_REQUEST_BYTES (declared or chunked) are 413s; inputs past the per-field limits
  (prompt length, URL schemes, numeric ranges, JSON size) are 422s naming the field;
- adoption is for admins, and its model id can't climb out of the provider's URL path;
- a training can't push into a model outside REPLICATE_TRAINING_OWNER (or another user's);
- an input naming one of our outputs reaches the provider as a signed link, never as a URL
  that needs our API key; another user's output is refused.

The per-key rate limit is off on these stacks (tests/api/test_limits.py covers it).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.contracts import media_job_workflow_id
from providers.replicate import EMULATOR_TRAINING_OWNER
from sync_modules.registry import all_modules
from tests.e2e.conftest import E2E, LOCAL_ONLY
from tests.e2e.test_media_jobs import all_predictions, create, prediction, wait_job
from tests.e2e.test_sync_runs import wait_run
from tests.errors import error_message, error_of

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


def fresh_key() -> str:
    return f"test-{uuid.uuid4()}"


async def predictions_of(e2e: E2E, job_id: str) -> list[dict[str, Any]]:
    """The emulator's predictions made for our job (its id is in the webhook URL we gave)."""
    return [p for p in await all_predictions(e2e) if job_id in (p.get("webhook") or "")]


async def workflow_runs(e2e: E2E, job_id: str) -> int:
    """Runs of the job's workflow, once the (eventually consistent) visibility shows one."""
    query = f"WorkflowId = '{media_job_workflow_id(job_id)}'"
    runs: list[Any] = []
    for _ in range(50):
        runs = [wf async for wf in e2e.temporal.list_workflows(query)]
        if runs and all(wf.close_time is not None for wf in runs):
            break
        await asyncio.sleep(0.2)
    return len(runs)


# --- Idempotency-Key ----------------------------------------------------------------------------


async def test_the_same_key_twice_makes_one_job_one_workflow_one_provider_job(e2e: E2E) -> None:
    key = fresh_key()
    body = {"kind": "generation", "input": {"prompt": "a fox", "seed": key}}
    async with e2e.api() as api:
        first = await api.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 202, first.text
        job = first.json()
        assert first.headers["location"] == f"/v1/jobs/{job['id']}"
        # A retry (the client timed out), with the body's keys in another order.
        again = await api.post(
            "/v1/jobs",
            content=json.dumps({"input": body["input"], "kind": "generation"}),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        assert again.status_code == 202, again.text
        assert again.json()["id"] == job["id"]
        assert again.headers["location"] == first.headers["location"]
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded", done
        # After it finished, the key still answers with the job as it is now.
        late = await api.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
        assert late.status_code == 202 and late.json()["id"] == job["id"]
        assert late.json()["status"] == "succeeded"
        # Another user's key of the same name is another key.
        async with e2e.api("bob") as bob:
            theirs = await bob.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            assert theirs.status_code == 202 and theirs.json()["id"] != job["id"]
            await wait_job(bob, theirs.json()["id"])
    assert len(await predictions_of(e2e, job["id"])) == 1
    assert await workflow_runs(e2e, job["id"]) == 1


async def test_concurrent_duplicates_make_one_job(e2e: E2E) -> None:
    key = fresh_key()
    body = {"kind": "generation", "input": {"prompt": "a fox", "seed": key}}
    async with e2e.api() as api, e2e.api() as other:
        answers = await asyncio.gather(
            *(client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
              for client in (api, other, api, other))
        )  # fmt: skip
        assert [a.status_code for a in answers] == [202] * 4, [a.text for a in answers]
        ids = {a.json()["id"] for a in answers}
        assert len(ids) == 1
        (job_id,) = ids
        assert (await wait_job(api, job_id))["status"] == "succeeded"
        mine = (await api.get("/v1/jobs", params={"limit": 50})).json()["items"]
        assert sum(j["input"].get("seed") == key for j in mine) == 1
    assert len(await predictions_of(e2e, job_id)) == 1
    assert await workflow_runs(e2e, job_id) == 1


async def test_the_key_with_another_body_is_a_409(e2e: E2E) -> None:
    key = fresh_key()
    async with e2e.api() as api:
        first = await create_with_key(api, key, {"prompt": "a fox"})
        other = await api.post(
            "/v1/jobs",
            json={"kind": "generation", "input": {"prompt": "a cat"}},
            headers={"Idempotency-Key": key},
        )
        assert other.status_code == 409, other.text
        assert error_of(other)["code"] == "idempotency_key_reused"
        assert "Idempotency-Key" in error_message(other)
        await wait_job(api, first["id"])


@pytest.mark.parametrize("key", ["", "é", "k" * 256])
async def test_a_malformed_key_is_a_422(e2e: E2E, key: str) -> None:
    async with e2e.api() as api:
        response = await api.post(
            "/v1/jobs",
            json={"kind": "generation", "input": {"prompt": "a fox"}},
            headers={b"Idempotency-Key": key.encode()},
        )
        assert response.status_code == 422, response.text
        assert "Idempotency-Key" in error_message(response)


async def create_with_key(api: httpx.AsyncClient, key: str, payload: dict[str, Any]) -> Any:
    response = await api.post(
        "/v1/jobs", json={"kind": "generation", "input": payload}, headers={"Idempotency-Key": key}
    )
    assert response.status_code == 202, response.text
    return response.json()


@LOCAL_ONLY
async def test_a_sync_run_start_is_idempotent_too(e2e: E2E) -> None:
    key = fresh_key()
    module = next(iter(all_modules()))
    body = {"company_id": "globex", "mode": "period", "month": "2024-11", "modules": [module]}
    async with e2e.api("admin") as admin:
        first = await admin.post("/v1/sync-runs", json=body, headers={"Idempotency-Key": key})
        assert first.status_code == 202, first.text
        run = first.json()
        assert first.headers["location"] == f"/v1/sync-runs/{run['id']}"
        again = await admin.post("/v1/sync-runs", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 202 and again.json()["id"] == run["id"], again.text
        other = await admin.post(
            "/v1/sync-runs", json={**body, "month": "2024-10"}, headers={"Idempotency-Key": key}
        )
        assert other.status_code == 409
        assert error_of(other)["code"] == "idempotency_key_reused"
        assert (await wait_run(admin, run["id"]))["status"] == "DONE"


@LOCAL_ONLY
async def test_created_resources_carry_their_location(e2e: E2E) -> None:
    async with e2e.api() as api:
        project = await api.post("/v1/projects", json={"content": {"nodes": []}})
        assert project.status_code == 201
        assert project.headers["location"] == f"/v1/projects/{project.json()['id']}"
        job = await api.post("/v1/jobs", json={"kind": "generation", "input": {"prompt": "a fox"}})
        assert job.headers["location"] == f"/v1/jobs/{job.json()['id']}"
        assert (await api.get(job.headers["location"])).status_code == 200
        await wait_job(api, job.json()["id"])


# --- body and input limits ----------------------------------------------------------------------


async def chunked(size: int) -> AsyncIterator[bytes]:
    yield b'{"kind": "generation", "input": {"prompt": "x", "blob": "'
    for _ in range(size // (64 * 1024)):
        yield b"x" * (64 * 1024)
    yield b'"}}'


@LOCAL_ONLY
async def test_bodies_over_the_cap_are_413s(e2e: E2E) -> None:
    async with e2e.api() as api:
        huge = {"kind": "generation", "input": {"prompt": "x", "blob": "x" * (21 * MB)}}
        response = await api.post("/v1/jobs", json=huge)
        assert response.status_code == 413, response.text[:300]
        assert "1 MB" in error_message(response)
        # No Content-Length: counted as it arrives.
        streamed = await api.post(
            "/v1/jobs", content=chunked(3 * MB), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in streamed.request.headers
        assert streamed.status_code == 413, streamed.text[:300]
        # A 2 MB input is over the 1 MB cap before it could reach Temporal's 2 MB payloads.
        two = {"kind": "generation", "input": {"prompt": "x", "blob": "x" * (2 * MB)}}
        assert (await api.post("/v1/jobs", json=two)).status_code == 413
        # Projects are capped the same way.
        big = {"content": {"nodes": [], "blob": "x" * (2 * MB)}}
        assert (await api.post("/v1/projects", json=big)).status_code == 413
        # Under the cap but over the input's own limit: a 422 that says so.
        mid = {"kind": "generation", "input": {"prompt": "x", "blob": "x" * (300 * 1024)}}
        response = await api.post("/v1/jobs", json=mid)
        assert response.status_code == 422 and "KB of JSON" in error_message(response)


@LOCAL_ONLY
async def test_inputs_past_their_limits_are_422s_naming_the_field(e2e: E2E) -> None:
    cases = [
        ({"kind": "generation", "input": {"prompt": "x" * 10_001}}, "input.prompt"),
        ({"kind": "upscale", "input": {"image": "ftp://example.com/in.png", "scale": 2}},
         "input.image"),
        ({"kind": "upscale", "input": {"image": "https://example.com/in.png", "scale": 1000}},
         "input.scale"),
        ({"kind": "edit", "provider": "kie", "input": {
            "prompt": "x", "image_urls": [f"https://example.com/{i}.png" for i in range(20)]}},
         "input.image_urls"),
        ({"kind": "generation", "input": {"prompt": "x", "num_outputs": 500}},
         "input.num_outputs"),
        ({"kind": "generation", "model": "../../v1/anything", "input": {"prompt": "x"}},
         "owner/name"),
        ({"kind": "generation", "provider": "fal", "model": "fal-ai/../../x",
          "input": {"prompt": "x"}}, "fal endpoint id"),
    ]  # fmt: skip
    async with e2e.api() as api:
        for body, field in cases:
            response = await api.post("/v1/jobs", json=body)
            assert response.status_code == 422, (body, response.text)
            assert field in error_message(response), (field, response.text)


# --- adoption ---------------------------------------------------------------------------------


@LOCAL_ONLY
async def test_adoption_is_for_admins_and_checks_the_model(e2e: E2E) -> None:
    body = {"provider": "replicate", "provider_job_id": "whatever"}
    async with e2e.api("alice") as alice:
        response = await alice.post("/v1/jobs/adopt", json=body)
        assert response.status_code == 403, response.text
    async with e2e.api("admin") as admin:
        for model in ("../../v1/anything", "../..", "owner/.."):
            response = await admin.post("/v1/jobs/adopt", json={**body, "model": model})
            assert response.status_code == 422, response.text
            assert "model" in error_message(response)
        response = await admin.post(
            "/v1/jobs/adopt",
            json={"provider": "fal", "provider_job_id": "r1", "model": "fal-ai/../../v1/x"},
        )
        assert response.status_code == 422, response.text
        dots = await admin.post("/v1/jobs/adopt", json={**body, "provider_job_id": ".."})
        assert dots.status_code == 422, dots.text


# --- trainings ----------------------------------------------------------------------------------


@LOCAL_ONLY
async def test_a_training_pushes_only_into_the_owners_models(e2e: E2E) -> None:
    owner = EMULATOR_TRAINING_OWNER
    images = "https://example.com/faces.zip"
    async with e2e.api("alice") as alice:
        for destination, hint in (
            ("someone-else/their-model", f"'{owner}/"),
            (f"{owner}/bob-lora", f"{owner}/alice-"),
            (f"{owner}/lora", f"{owner}/alice-"),
        ):
            response = await alice.post(
                "/v1/jobs",
                json={"kind": "training",
                      "input": {"destination": destination, "input_images": images}},
            )  # fmt: skip
            assert response.status_code == 422, (destination, response.text)
            assert hint in error_message(response), response.text
            assert "input.destination" in error_message(response)


# --- inputs that point at our own outputs -------------------------------------------------------


async def test_an_own_output_reaches_the_provider_as_a_signed_link(e2e: E2E) -> None:
    base = e2e.stack.api_url.rstrip("/")
    async with e2e.api("alice") as alice, e2e.api("bob") as bob:
        source = await create(alice)
        assert (await wait_job(alice, source["id"]))["status"] == "succeeded"
        own = f"{base}/v1/jobs/{source['id']}/outputs/0"  # what the dashboard sends
        upscale = await alice.post(
            "/v1/jobs", json={"kind": "upscale", "input": {"image": own, "scale": 2}}
        )
        assert upscale.status_code == 202, upscale.text
        job = upscale.json()
        assert job["input"]["image"] == own  # the record keeps what was asked
        done = await wait_job(alice, job["id"])
        assert done["status"] == "succeeded", done
        sent = (await prediction(e2e, done))["input"]["image"]
        assert sent.startswith(f"{own}?token="), sent
        async with httpx.AsyncClient(timeout=30.0) as provider:  # no API key, as a provider
            fetched = await provider.get(sent, follow_redirects=True)
            assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")
            assert (await provider.get(own)).status_code == 401

        # Bob can't use Alice's output, nor one that does not exist, nor other API URLs.
        for image, hint in (
            (own, f"job {source['id']} has no output 0"),
            (f"{base}/v1/jobs/{uuid.uuid4().hex}/outputs/0", "has no output 0"),
            (f"{base}/v1/health", "output of one of your jobs"),
        ):
            refused = await bob.post(
                "/v1/jobs", json={"kind": "upscale", "input": {"image": image, "scale": 2}}
            )
            assert refused.status_code == 422, refused.text
            assert "input.image" in error_message(refused) and hint in error_message(refused)
