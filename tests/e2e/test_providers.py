"""fal.ai and KIE.ai end to end: Replicate's behaviour suite, run against each one's emulator.

Same stack as test_media_jobs.py; jobs name their `provider`, and each emulator misbehaves on
request through `input._emulator` with its own switch names (`ProviderCase`). Every kind landing
at its key runs on both stacks; the rest (provider protocol and workflow paths, which don't
depend on the database or the storage) on SQLite + local storage only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from emulators.fal.config import DEFAULT_SIGNING_SEED
from emulators.fal.signing import SigningKey
from providers import kie
from providers.fal import EMULATOR_USER_ID as FAL_EMULATOR_USER_ID
from tests.e2e.conftest import E2E, LOCAL_ONLY
from tests.e2e.test_media_jobs import TERMINAL, create, wait_job
from tests.e2e.webhook_urls import hook_url

pytestmark = pytest.mark.e2e

IMAGE_URL = "https://example.com/in.png"
FAIL_MESSAGE = "NSFW content detected"


@dataclass(frozen=True)
class ProviderCase:
    """A provider's fault switches for each behaviour of the suite, and an input per kind."""

    name: str
    drop_webhooks: dict[str, Any]
    duplicate_webhooks: dict[str, Any]  # two extra copies of the terminal webhook
    never_starts: dict[str, Any]
    fail: dict[str, Any]
    rate_limited: dict[str, Any]  # two 429s on submit, then through
    server_errors: dict[str, Any]  # two 5xx on submit, then through
    inputs: dict[str, dict[str, Any]]
    # Where the emulator shows a request's history: `{id}` is the provider job id.
    events_path: str
    webhook_event: str


FAL = ProviderCase(
    name="fal",
    drop_webhooks={"drop_webhooks": True},
    duplicate_webhooks={"duplicate_webhooks": 2},
    never_starts={"stay_queued": True},
    fail={"fail": FAIL_MESSAGE},
    rate_limited={"rate_limits": 2, "retry_after_seconds": 1},
    server_errors={"server_errors": 2},
    inputs={
        "generation": {"prompt": "a red fox in the snow", "num_images": 2},
        "edit": {"prompt": "make the fox blue", "image_url": IMAGE_URL},
        "upscale": {"image_url": IMAGE_URL, "scale": 2},
        "video": {"prompt": "a fox running"},
        "training": {"images_data_url": "https://example.com/faces.zip"},
    },
    events_path="/_emulator/requests/{id}/events",
    webhook_event="webhook",
)
KIE = ProviderCase(
    name="kie",
    drop_webhooks={"drop_webhooks": True},
    duplicate_webhooks={"duplicate_webhooks": 2},
    never_starts={"stay_waiting": True},
    fail={"fail": FAIL_MESSAGE},
    rate_limited={"rate_limits": 2, "retry_after_seconds": 1},
    server_errors={"server_errors": 2},
    inputs={
        "generation": {"prompt": "a red fox in the snow", "num_images": 2},
        "edit": {"prompt": "make the fox blue", "image_urls": [IMAGE_URL]},
        "upscale": {"image_url": IMAGE_URL, "upscale_factor": "2"},
        "video": {"prompt": "a fox running"},
    },
    events_path="/_emulator/tasks/{id}/events",
    webhook_event="webhook",
)
CASES = pytest.mark.parametrize("case", [FAL, KIE], ids=lambda c: c.name)
# The stored file of each kind: (storage context, extension, first bytes).
STORED = {
    "generation": ("generated", "png", b"\x89PNG"),
    "edit": ("edited", "png", b"\x89PNG"),
    "upscale": ("upscaled", "png", b"\x89PNG"),
    "video": ("videos", "mp4", None),
}


async def submit(api: httpx.AsyncClient, case: ProviderCase, **faults: Any) -> dict[str, Any]:
    """A generation at `case`'s provider with these fault switches.

    Its prompt is one no other job sends: the emulators count submit faults per distinct input.
    """
    prompt = f"a red fox, take {uuid.uuid4().hex[:8]}"
    payload = {"prompt": prompt, "num_images": 1, "_emulator": faults}
    job = await create(api, provider=case.name, input=payload)
    assert job["provider"] == case.name
    return job


async def emulator_events(e2e: E2E, case: ProviderCase, job: dict[str, Any]) -> dict[str, Any]:
    async with e2e.provider_emulator(case.name) as emulator:
        response = await emulator.get(case.events_path.format(id=job["provider_job_id"]))
        assert response.status_code == 200, response.text
        timeline: dict[str, Any] = response.json()
        return timeline


async def webhook_attempts(
    e2e: E2E, case: ProviderCase, job: dict[str, Any], count: int, *, until_2xx: bool = False
) -> list[dict[str, Any]]:
    """The emulator's first `count` webhook attempts for `job`, once it has made them (or,
    `until_2xx`, fewer when one was acknowledged: the sender stops retrying there)."""
    deadline = time.monotonic() + 30
    while True:
        events = (await emulator_events(e2e, case, job))["events"]
        attempts = [e for e in events if e["type"] == case.webhook_event]
        acknowledged = any(200 <= (a.get("status_code") or 0) < 300 for a in attempts)
        if len(attempts) >= count or (until_2xx and acknowledged):
            return attempts
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} webhook attempts never came: {events}")
        await asyncio.sleep(0.1)


async def emulator_stats(e2e: E2E, case: ProviderCase) -> dict[str, int]:
    """Answers of the emulator so far by status: fal's HTTP statuses, KIE's body codes."""
    async with e2e.provider_emulator(case.name) as emulator:
        stats = (await emulator.get("/_emulator/stats")).json()
    counts: dict[str, int] = stats["responses"] if case is FAL else stats["codes"]
    return counts


# --- the webhook path, every kind, both stacks ----------------------------------------------


@CASES
async def test_every_kind_via_webhook_lands_at_its_key(e2e: E2E, case: ProviderCase) -> None:
    async with e2e.api() as api:
        jobs = {
            kind: await create(api, kind=kind, provider=case.name, input=payload)
            for kind, payload in case.inputs.items()
        }
        finished = await asyncio.gather(*(wait_job(api, job["id"]) for job in jobs.values()))
        done = dict(zip(jobs, finished, strict=True))
        for kind, job in done.items():
            assert job["status"] == "succeeded", job
            assert job["provider"] == case.name and job["webhook_count"] >= 1, job
            if kind == "training":
                # The LoRA file is stored (tests/e2e/test_store_reliability.py checks its bytes).
                key = f"trainings/alice/{job['id']}_0.tar"
                assert [o["key"] for o in job["outputs"]] == [key], job
                assert job["output_data"]["stored"] == {"diffusers_lora_file": key}, job
                continue
            context, ext, magic = STORED[kind]
            expected = [
                f"{context}/alice/{job['id']}_{n}.{ext}"
                for n in range(2 if kind == "generation" else 1)
            ]
            assert [o["key"] for o in job["outputs"]] == expected, job
            stored = await api.get(f"/v1/jobs/{job['id']}/outputs/0", follow_redirects=True)
            assert stored.status_code == 200
            assert hashlib.sha256(stored.content).hexdigest() == job["outputs"][0]["sha256"]
            if magic is not None:
                assert stored.content.startswith(magic)
            else:
                assert stored.content[4:8] == b"ftyp"
        storage = "s3" if e2e.variant == "postgres-s3" else "local"
        assert {job["storage_provider"] for job in done.values()} <= {storage, None}
        assert done["generation"]["storage_provider"] == storage


# --- misbehaving providers, SQLite + local storage -----------------------------------------


@LOCAL_ONLY
@CASES
async def test_every_webhook_lost_finishes_by_polling(e2e: E2E, case: ProviderCase) -> None:
    async with e2e.api() as api:
        job = await submit(api, case, **case.drop_webhooks)
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded", done
        assert done["webhook_count"] == 0 and done["poll_count"] >= 1
        assert len(done["outputs"]) == 1


@LOCAL_ONLY
@CASES
async def test_duplicated_webhooks_give_one_record(e2e: E2E, case: ProviderCase) -> None:
    async with e2e.api() as api:
        job = await submit(api, case, **case.duplicate_webhooks)
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded", done
        attempts = await webhook_attempts(e2e, case, done, 3)
        # every copy was acknowledged (a late one as "ignored"), none changed the record
        assert [a["status_code"] for a in attempts] == [200, 200, 200]
        again = (await api.get(f"/v1/jobs/{job['id']}")).json()
        assert again["status"] == "succeeded" and again["outputs"] == done["outputs"]
        assert len(done["outputs"]) == 1


@LOCAL_ONLY
async def test_cancel_reaches_fal(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await submit(api, FAL, **FAL.never_starts)
        submitted = await wait_job(api, job["id"], {"submitted"})
        assert (await api.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 202
        done = await wait_job(api, job["id"])
        assert done["status"] == "canceled" and done["outputs"] == []
    timeline = await emulator_events(e2e, FAL, submitted)
    assert (timeline["status"], timeline["outcome"]) == ("COMPLETED", "cancelled")
    assert any(e["type"] == "cancel_requested" for e in timeline["events"])


@LOCAL_ONLY
async def test_cancel_stops_following_a_kie_task(e2e: E2E) -> None:
    """KIE can't cancel: the job ends `canceled` and whatever the task does later is ignored."""
    async with e2e.api() as api:
        job = await submit(api, KIE, **KIE.never_starts)
        submitted = await wait_job(api, job["id"], {"submitted"})
        assert (await api.post(f"/v1/jobs/{job['id']}/cancel")).status_code == 202
        done = await wait_job(api, job["id"])
        assert done["status"] == "canceled" and done["outputs"] == []
        task_id = submitted["provider_job_id"]
        assert (await emulator_events(e2e, KIE, submitted))["state"] == "waiting"
        # The task finishes at KIE after all: its callback is acknowledged and changes nothing.
        async with e2e.provider_emulator("kie") as emulator:
            forced = await emulator.post(
                f"/_emulator/tasks/{task_id}/complete", json={"state": "success"}
            )
            assert forced.status_code == 200, forced.text
        attempts = await webhook_attempts(e2e, KIE, submitted, 1)
        assert attempts[0]["status_code"] == 200
        after = (await api.get(f"/v1/jobs/{job['id']}")).json()
        assert after["status"] == "canceled" and after["outputs"] == []


@LOCAL_ONLY
@CASES
async def test_provider_failure_fails_with_its_message(e2e: E2E, case: ProviderCase) -> None:
    async with e2e.api() as api:
        job = await submit(api, case, **case.fail)
        done = await wait_job(api, job["id"])
        assert done["status"] == "failed", done
        assert FAIL_MESSAGE in done["error"]
        assert done["outputs"] == []


@LOCAL_ONLY
@CASES
async def test_429_and_5xx_on_submit_are_waited_out(e2e: E2E, case: ProviderCase) -> None:
    before = await emulator_stats(e2e, case)
    async with e2e.api() as api:
        limited = await submit(api, case, **case.rate_limited)
        failing = await submit(api, case, **case.server_errors)
        done = await asyncio.gather(wait_job(api, limited["id"]), wait_job(api, failing["id"]))
        assert [j["status"] for j in done] == ["succeeded", "succeeded"], done
    after = await emulator_stats(e2e, case)
    assert after.get("429", 0) - before.get("429", 0) == 2
    assert after.get("500", 0) - before.get("500", 0) == 2


# --- the webhook bridge's checks -------------------------------------------------------------


def fal_headers(
    body: bytes, request_id: str, *, key: SigningKey | None = None, timestamp: int | None = None
) -> dict[str, str]:
    key = key or SigningKey.from_seed(bytes.fromhex(DEFAULT_SIGNING_SEED))
    ts = int(time.time()) if timestamp is None else timestamp
    user = FAL_EMULATOR_USER_ID
    return {
        "content-type": "application/json",
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user,
        "X-Fal-Webhook-Timestamp": str(ts),
        "X-Fal-Webhook-Signature": key.sign(request_id, user, ts, body),
    }


@LOCAL_ONLY
async def test_fal_webhook_signed_with_another_key_is_refused(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await submit(api, FAL, webhook_wrong_key=True)
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded" and done["webhook_count"] == 0, done
    # The first and both retries, or fewer once one was acknowledged (see below).
    attempts = await webhook_attempts(e2e, FAL, done, 3, until_2xx=True)
    codes = [a["status_code"] for a in attempts]
    # Refused while the job ran; a retry that comes after the poll finished the job is
    # acknowledged unread (a finished job's webhooks are ignored before any verification), and
    # webhook_count 0 above says no forged event was ever taken.
    assert codes[0] == 401 and set(codes) <= {401, 200}, codes


@LOCAL_ONLY
async def test_fal_webhook_bridge_checks_key_timestamp_and_body(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await submit(api, FAL, **FAL.never_starts)
        submitted = await wait_job(api, job["id"], {"submitted"})
        request_id = submitted["provider_job_id"]
        url = hook_url(e2e, "fal", job["id"])
        claim = {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": "OK",
            "payload": {"images": [{"url": "http://127.0.0.1:1/forged.png"}]},
        }
        body = json.dumps(claim).encode()
        stranger = SigningKey.from_seed(os.urandom(32))
        refused = [
            (body, {"content-type": "application/json"}),  # unsigned
            (body, fal_headers(body, request_id, key=stranger)),  # another key
            (body, fal_headers(body, request_id, timestamp=int(time.time()) - 600)),  # stale
            (body.replace(b"forged", b"swapped"), fal_headers(body, request_id)),  # body changed
        ]
        for content, headers in refused:
            response = await api.post(url, content=content, headers=headers)
            assert response.status_code == 401, response.text
        assert (await api.get(f"/v1/jobs/{job['id']}")).json()["status"] == "submitted"

        # The same checks pass a correctly signed webhook: one fal sends when it can't
        # serialise the output, which only nudges the job to poll.
        nudge = json.dumps({**claim, "payload": None, "payload_error": "not JSON"}).encode()
        accepted = await api.post(url, content=nudge, headers=fal_headers(nudge, request_id))
        assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
        await api.post(f"/v1/jobs/{job['id']}/cancel")
        assert (await wait_job(api, job["id"]))["status"] == "canceled"


def kie_headers(task_id: str, *, key: str, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"X-Webhook-Timestamp": str(ts), "X-Webhook-Signature": kie.sign(key, task_id, ts)}


@LOCAL_ONLY
async def test_kie_callback_bridge_checks_signature_and_defers_when_kie_is_down(
    e2e: E2E,
) -> None:
    hmac_key = e2e.stack.app_env()["KIE_WEBHOOK_HMAC_KEY"]
    async with e2e.api() as api:
        job = await submit(api, KIE, **KIE.never_starts)  # checked only while it runs
        task_id = (await wait_job(api, job["id"], {"submitted"}))["provider_job_id"]
        url = hook_url(e2e, "kie", job["id"])
        body = json.dumps({"code": 200, "data": {"taskId": task_id, "state": "success"}})
        for headers in (
            {},  # unsigned, while a key is configured
            kie_headers(task_id, key="another-key"),
            kie_headers(task_id, key=hmac_key, timestamp=int(time.time()) - 600),
            kie_headers("task_someone_else", key=hmac_key),
        ):
            response = await api.post(url, content=body, headers=headers)
            assert response.status_code == 401, response.text

        # Signed, but KIE can't confirm the task right now: 503, so KIE sends it again.
        async with e2e.provider_emulator("kie") as emulator:
            fault = {"rate_limits": 1, "errors_on": ["record"]}
            (await emulator.put("/_emulator/faults", json=fault)).raise_for_status()
            try:
                signed = kie_headers(task_id, key=hmac_key)
                deferred = await api.post(url, content=body, headers=signed)
                assert deferred.status_code == 503, deferred.text
                # KIE's retry is confirmed by recordInfo, whose state (waiting) wins over the
                # body's "success": the job goes on.
                retried = await api.post(url, content=body, headers=signed)
                assert retried.status_code == 200, retried.text
                assert retried.json()["status"] == "accepted"
            finally:
                await emulator.delete("/_emulator/faults")
        assert (await api.get(f"/v1/jobs/{job['id']}")).json()["status"] == "submitted"
        await api.post(f"/v1/jobs/{job['id']}/cancel")
        assert (await wait_job(api, job["id"]))["status"] == "canceled"


# --- choosing a provider at the API edge ---------------------------------------------------


@LOCAL_ONLY
async def test_provider_choice_is_checked_at_the_api(e2e: E2E) -> None:
    async with e2e.api() as api:
        cases = [
            ({"kind": "training", "provider": "kie", "input": {"prompt": "x"}}, "KIE has no training"),
            ({"kind": "generation", "provider": "fal", "input": {"prompt": "x"}, "model": "flux"},
             "fal endpoint id"),
            ({"kind": "edit", "provider": "fal", "input": {"prompt": "x"}}, "input.image_url"),
            ({"kind": "edit", "provider": "kie", "input": {"prompt": "x"}}, "input.image_urls"),
            ({"kind": "training", "provider": "fal", "input": {"destination": "a/b"}},
             "input.images_data_url"),
            ({"kind": "generation", "provider": "acme", "input": {"prompt": "x"}},
             "fal, kie, replicate"),
        ]  # fmt: skip
        for body, hint in cases:
            response = await api.post("/v1/jobs", json=body)
            assert response.status_code == 422, body
            assert hint in response.text, (hint, response.text)
        # Defaults: the provider from DEFAULT_PROVIDER, the model per provider and kind.
        default = await create(api, input={"prompt": "fox", "_emulator": {"stay_starting": True}})
        chosen = await submit(api, FAL, **FAL.never_starts)
        assert (default["provider"], chosen["model"]) == ("replicate", "fal-ai/flux/dev")
        for job in (default, chosen):
            await wait_job(api, job["id"], {"submitted"})
            await api.post(f"/v1/jobs/{job['id']}/cancel")
            assert (await wait_job(api, job["id"], TERMINAL))["status"] == "canceled"
