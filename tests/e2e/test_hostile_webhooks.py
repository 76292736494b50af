"""Webhooks sent by someone else than our provider account, or for someone else's job.

A provider's signature proves who sent an event, not which of our jobs it is for: fal signs
every customer's webhooks with the same keys. Each test replays one attack on the whole stack
and shows it changes nothing: the URL token binds a webhook URL to its job, the event's
provider job id must be the job's own (the workflow holds events that come before it knows
it), a webhook id is handed over once, and an untrusted job id never reaches a log line raw.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from core.tokens import webhook_token
from emulators.fal.config import DEFAULT_SIGNING_SEED
from emulators.fal.signing import SigningKey
from providers import kie
from providers.fal import EMULATOR_USER_ID as FAL_EMULATOR_USER_ID
from tests.e2e.conftest import E2E, LOCAL_ONLY
from tests.e2e.test_media_jobs import create, wait_job
from tests.e2e.webhook_urls import hook_url
from tests.errors import error_message

pytestmark = pytest.mark.e2e

FORGED_URL = "http://127.0.0.1:1/forged.png"


def fal_event(request_id: str, *, payload: Any = None) -> bytes:
    """A fal completion webhook body for `request_id` (payload None: fal's "can't serialise")."""
    body: dict[str, Any] = {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK",
        "payload": payload,
    }
    if payload is None:
        body["payload_error"] = "Output is not JSON serialisable"
    return json.dumps(body).encode()


def fal_signed(
    body: bytes, request_id: str, *, user_id: str = FAL_EMULATOR_USER_ID
) -> dict[str, str]:
    """Headers signed with the fal emulator's key, exactly as the emulator signs its webhooks."""
    key = SigningKey.from_seed(bytes.fromhex(DEFAULT_SIGNING_SEED))
    timestamp = int(time.time())
    return {
        "content-type": "application/json",
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": user_id,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": key.sign(request_id, user_id, timestamp, body),
    }


async def fal_job(api: httpx.AsyncClient, **faults: Any) -> dict[str, Any]:
    prompt = f"a red fox, take {uuid.uuid4().hex[:8]}"  # fresh: fal counts faults per input
    return await create(
        api, provider="fal", input={"prompt": prompt, "num_images": 1, "_emulator": faults}
    )


async def provider_signals(e2e: E2E, job_id: str) -> int:
    """How many `provider_event` signals the job's workflow history holds."""
    history = await e2e.temporal.get_workflow_handle(f"media-job-{job_id}").fetch_history()
    return sum(
        1
        for event in history.events
        if event.HasField("workflow_execution_signaled_event_attributes")
        and event.workflow_execution_signaled_event_attributes.signal_name == "provider_event"
    )


@LOCAL_ONLY
async def test_foreign_fal_event_before_and_after_the_submit_changes_nothing(e2e: E2E) -> None:
    async with e2e.api() as api:
        # The submit is answered 429 first: the job waits seconds before it has a provider job.
        job = await fal_job(api, rate_limits=1, retry_after_seconds=4, stay_queued=True)
        url = hook_url(e2e, "fal", job["id"])
        foreign = f"req-of-another-customer-{uuid.uuid4().hex[:8]}"
        claim = fal_event(foreign, payload={"images": [{"url": FORGED_URL}] * 3})

        early = await api.post(url, content=claim, headers=fal_signed(claim, foreign))
        assert early.status_code == 200, early.text
        # Taken to the workflow: the bridge can't tell yet, the workflow holds it.
        assert early.json()["status"] == "accepted", "the submit returned too soon for the test"

        submitted = await wait_job(api, job["id"], {"submitted", "processing"})
        own = submitted["provider_job_id"]
        assert own and own != foreign
        late = await api.post(url, content=claim, headers=fal_signed(claim, foreign))
        assert late.status_code == 200 and late.json()["status"] == "ignored", late.text
        signals = await provider_signals(e2e, job["id"])
        assert signals == 1  # the early one only

        async with e2e.provider_emulator("fal") as emulator:
            done = await emulator.post(f"/_emulator/requests/{own}/complete", json={})
            assert done.status_code == 200, done.text
        finished = await wait_job(api, job["id"])
    # A forged output (127.0.0.1:1) taken as the result would have failed the copy.
    assert finished["status"] == "succeeded", finished
    assert finished["provider_job_id"] == own
    assert len(finished["outputs"]) == 1


@LOCAL_ONLY
async def test_webhook_without_its_url_token_is_refused_and_signals_nothing(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await fal_job(api, stay_queued=True)
        own = (await wait_job(api, job["id"], {"submitted"}))["provider_job_id"]
        nudge = fal_event(own)
        other = await fal_job(api, stay_queued=True)
        for url in (
            hook_url(e2e, "fal", job["id"], token=None),
            hook_url(e2e, "fal", job["id"], token="A" * 32),
            # a real token, of another job
            hook_url(e2e, "fal", job["id"], token=webhook_token(
                e2e.stack.secret_key().encode(), other["id"])),
        ):  # fmt: skip
            response = await api.post(url, content=nudge, headers=fal_signed(nudge, own))
            assert response.status_code == 401, response.text
            assert "token" in error_message(response)
        assert await provider_signals(e2e, job["id"]) == 0
        for hooked in (job, other):
            await api.post(f"/v1/jobs/{hooked['id']}/cancel")
            assert (await wait_job(api, hooked["id"]))["status"] == "canceled"


@LOCAL_ONLY
async def test_fal_event_of_another_fal_account_is_refused(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await fal_job(api, stay_queued=True)
        own = (await wait_job(api, job["id"], {"submitted"}))["provider_job_id"]
        nudge = fal_event(own)
        # Genuinely signed by fal's key, for our own provider job id, but another account's.
        headers = fal_signed(nudge, own, user_id="another-fal-customer")
        response = await api.post(hook_url(e2e, "fal", job["id"]), content=nudge, headers=headers)
        assert response.status_code == 401, response.text
        assert await provider_signals(e2e, job["id"]) == 0
        await api.post(f"/v1/jobs/{job['id']}/cancel")
        assert (await wait_job(api, job["id"]))["status"] == "canceled"


async def test_a_replayed_webhook_id_adds_no_history_event(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await fal_job(api, stay_queued=True)
        own = (await wait_job(api, job["id"], {"submitted"}))["provider_job_id"]
        url = hook_url(e2e, "fal", job["id"])
        nudge = fal_event(own)
        headers = fal_signed(nudge, own)
        first = await api.post(url, content=nudge, headers=headers)
        assert first.status_code == 200 and first.json()["status"] == "accepted", first.text
        replay = await api.post(url, content=nudge, headers=headers)
        assert replay.status_code == 200 and replay.json()["status"] == "duplicate", replay.text
        assert await provider_signals(e2e, job["id"]) == 1
        await api.post(f"/v1/jobs/{job['id']}/cancel")
        assert (await wait_job(api, job["id"]))["status"] == "canceled"


@LOCAL_ONLY
async def test_forged_job_id_is_refused_and_never_logged_raw(e2e: E2E) -> None:
    marker = f"FORGED-{uuid.uuid4().hex[:12]}"
    forged = f"x\r\n{marker} ERROR admin logged in\x1b[31m"
    body = fal_event("req-1")
    async with e2e.api() as api:
        for token in ("valid", None):
            url = hook_url(e2e, "fal", forged, token=token)
            response = await api.post(url, content=body, headers=fal_signed(body, "req-1"))
            assert response.status_code == 404, response.text
    log = e2e.stack.api.log_path.read_text(errors="replace") if e2e.stack.api else ""
    assert marker in log  # the attempt is logged, escaped
    assert f"\n{marker}" not in log and "\x1b[31m" not in log


@LOCAL_ONLY
async def test_kie_callback_without_a_signature_is_refused(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await kie_job(api, stay_waiting=True)
        task_id = (await wait_job(api, job["id"], {"submitted"}))["provider_job_id"]
        body = kie_event(task_id)
        for url in (hook_url(e2e, "kie", job["id"]), hook_url(e2e, "kie", job["id"], token=None)):
            response = await api.post(url, content=body)  # unsigned; default settings
            assert response.status_code == 401, response.text
        assert await provider_signals(e2e, job["id"]) == 0
        await api.post(f"/v1/jobs/{job['id']}/cancel")
        assert (await wait_job(api, job["id"]))["status"] == "canceled"


@LOCAL_ONLY
async def test_kie_callback_for_a_finished_job_costs_no_recordinfo(e2e: E2E) -> None:
    hmac_key = e2e.stack.app_env()["KIE_WEBHOOK_HMAC_KEY"]
    async with e2e.api() as api:
        job = await kie_job(api)
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded", done
        task_id = done["provider_job_id"]
        signed = kie.sign(hmac_key, task_id, now := int(time.time()))
        headers = {"X-Webhook-Timestamp": str(now), "X-Webhook-Signature": signed}
        async with e2e.provider_emulator("kie") as emulator:
            before = await recordinfo_calls(emulator)
            for url in (hook_url(e2e, "kie", job["id"]), hook_url(e2e, "kie", job["id"], None)):
                await api.post(url, content=kie_event(task_id), headers=headers)
            assert await recordinfo_calls(emulator) == before


def kie_event(task_id: str) -> bytes:
    return json.dumps({"code": 200, "data": {"taskId": task_id, "state": "success"}}).encode()


async def kie_job(api: httpx.AsyncClient, **faults: Any) -> dict[str, Any]:
    prompt = f"a red fox, take {uuid.uuid4().hex[:8]}"
    return await create(api, provider="kie", input={"prompt": prompt, "_emulator": faults})


async def recordinfo_calls(emulator: httpx.AsyncClient) -> int:
    stats = (await emulator.get("/_emulator/stats")).json()
    return int(stats["requests"]["record"])
