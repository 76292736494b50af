"""Callbacks from the KIE emulator, checked by the real `KieWebhooks` verifier.

The verifier re-reads recordInfo from the emulator, so these tests also show that a callback's
body never decides anything: only what recordInfo says does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping

import httpx
import pytest

from core.contracts import ProviderPhase, ProviderSnapshot
from providers.base import WebhookRejected, WebhookUnavailable
from providers.kie import KieWebhooks, sign
from tests.emulators.kie_support import (
    CALLBACK_RETRY_DELAYS,
    HMAC_KEY,
    KIE_KEY,
    callback_attempts,
    create,
    events,
    hook_name,
    record,
    result_urls,
    task_body,
    wait_state,
)
from tests.emulators.support import Delivery, WebhookReceiver, wait_for

pytest_plugins = ["tests.emulators.kie_fixtures"]


def bridge(
    kie_url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    hmac_key: str | None = HMAC_KEY,
    allow_unsigned: bool = False,
    reread_only: bool = False,
) -> tuple[str | None, ProviderSnapshot]:
    """What the webhook bridge does with a callback: `verify`, then `parse`.

    Runs on its own event loop with its own client, as the API would; `reread_only` calls
    `authoritative_snapshot` instead.
    """

    async def run() -> tuple[str | None, ProviderSnapshot]:
        async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
            webhooks = KieWebhooks(
                http,
                base_url=kie_url,
                api_key=KIE_KEY,
                hmac_key=hmac_key,
                allow_unsigned=allow_unsigned,
                tolerance_seconds=300,
            )
            if reread_only:
                return None, await webhooks.authoritative_snapshot(body)
            message_id = await webhooks.verify(headers, body)
            return message_id, webhooks.parse(body)

    return asyncio.run(run())


def run_with_callback(
    api: httpx.Client, receiver: WebhookReceiver, faults: dict[str, object] | None = None
) -> tuple[str, Delivery]:
    """Create a task whose callback goes to a fresh hook; return its id and first delivery."""
    name = hook_name()
    task_id = create(api, task_body(faults, callback=receiver.url(name)))
    [delivery, *_] = receiver.wait_count(name, 1)
    return task_id, delivery


def test_success_callback_is_signed_and_verifies(
    kie_url: str, kie_api: httpx.Client, receiver: WebhookReceiver
) -> None:
    task_id, delivery = run_with_callback(kie_api, receiver)
    body = delivery.json
    assert body["code"] == 200 and body["msg"]
    assert body["data"]["taskId"] == task_id and body["data"]["state"] == "success"
    assert body["data"] == record(kie_api, task_id)  # the callback carries recordInfo's data
    assert delivery.headers["content-type"] == "application/json"
    timestamp = int(delivery.headers["x-webhook-timestamp"])
    assert delivery.headers["x-webhook-signature"] == sign(HMAC_KEY, task_id, timestamp)

    message_id, snapshot = bridge(kie_url, delivery.headers, delivery.body)
    assert message_id == f"{task_id}.{timestamp}"
    assert snapshot.provider_job_id == task_id
    assert snapshot.phase == ProviderPhase.SUCCEEDED
    assert snapshot.output_urls == result_urls(body["data"])


def test_failure_callback(kie_url: str, kie_api: httpx.Client, receiver: WebhookReceiver) -> None:
    _, delivery = run_with_callback(kie_api, receiver, {"fail": "NSFW content detected"})
    assert delivery.json["code"] == 501
    assert delivery.json["data"]["state"] == "fail"
    _, snapshot = bridge(kie_url, delivery.headers, delivery.body)
    assert snapshot.phase == ProviderPhase.FAILED
    assert snapshot.error is not None and "NSFW content detected" in snapshot.error


@pytest.mark.parametrize("fail", [None, "the real outcome is a failure"])
def test_lying_callback_is_caught_by_re_reading_record_info(
    kie_url: str, kie_api: httpx.Client, receiver: WebhookReceiver, fail: str | None
) -> None:
    task_id, delivery = run_with_callback(
        kie_api, receiver, {"lie_in_callback": True, "fail": fail}
    )
    claimed = delivery.json["data"]
    assert claimed["state"] == "success"
    claimed_urls = result_urls(claimed)
    truth = record(kie_api, task_id)

    # The signature is valid all the same: it covers only taskId and the timestamp.
    message_id, snapshot = bridge(kie_url, delivery.headers, delivery.body)
    assert message_id is not None
    assert snapshot.provider_status == truth["state"]
    assert not set(snapshot.output_urls) & set(claimed_urls)
    if fail is None:
        assert snapshot.output_urls == result_urls(truth)
    else:
        assert snapshot.phase == ProviderPhase.FAILED and snapshot.output_urls == []
    assert [a["lie"] for a in callback_attempts(kie_api, task_id)] == [True]


def test_authoritative_snapshot_ignores_the_body(kie_url: str, kie_api: httpx.Client) -> None:
    task_id = create(kie_api, task_body({"stay_waiting": True}))
    forged = json.dumps(
        {"code": 200, "data": {"taskId": task_id, "state": "success", "resultJson": "{}"}}
    ).encode()
    _, snapshot = bridge(kie_url, {}, forged, reread_only=True)
    assert (snapshot.provider_status, snapshot.phase) == ("waiting", ProviderPhase.QUEUED)


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ({"callback_bad_signature": True}, "does not match"),
        ({"callback_timestamp_skew_seconds": -3600}, "tolerance"),
        ({"callback_timestamp_skew_seconds": 3600}, "tolerance"),
        ({"omit_callback_signature": True}, "missing"),
    ],
)
def test_wrong_or_stale_signatures_are_rejected(
    kie_url: str,
    kie_api: httpx.Client,
    receiver: WebhookReceiver,
    faults: dict[str, object],
    reason: str,
) -> None:
    _, delivery = run_with_callback(kie_api, receiver, faults)
    with pytest.raises(WebhookRejected, match=reason):
        bridge(kie_url, delivery.headers, delivery.body)


def test_unsigned_callbacks_are_refused_unless_allowed_and_then_still_re_read(
    kie_url: str, kie_api: httpx.Client, receiver: WebhookReceiver
) -> None:
    task_id, delivery = run_with_callback(
        kie_api, receiver, {"omit_callback_signature": True, "lie_in_callback": True}
    )
    assert "x-webhook-signature" not in delivery.headers
    for key in (None, HMAC_KEY):
        with pytest.raises(WebhookRejected, match=r"unsigned|missing"):
            bridge(kie_url, delivery.headers, delivery.body, hmac_key=key)
    message_id, snapshot = bridge(
        kie_url, delivery.headers, delivery.body, hmac_key=None, allow_unsigned=True
    )
    assert message_id is None
    assert snapshot.output_urls == result_urls(record(kie_api, task_id))


def test_task_id_spelling_of_the_docs_sample_is_accepted(
    kie_url: str, kie_api: httpx.Client, receiver: WebhookReceiver
) -> None:
    task_id, delivery = run_with_callback(kie_api, receiver, {"callback_task_id_key": "task_id"})
    assert delivery.json["data"]["task_id"] == task_id and "taskId" not in delivery.json["data"]
    _, snapshot = bridge(kie_url, delivery.headers, delivery.body)
    assert snapshot.provider_job_id == task_id


def test_signed_callback_for_a_task_kie_does_not_know_is_rejected(kie_url: str) -> None:
    now = int(time.time())
    headers = {
        "X-Webhook-Timestamp": str(now),
        "X-Webhook-Signature": sign(HMAC_KEY, "task_forged", now),
    }
    body = json.dumps({"code": 200, "data": {"taskId": "task_forged", "state": "success"}})
    with pytest.raises(WebhookRejected, match="does not confirm"):
        bridge(kie_url, headers, body.encode())


def test_re_read_outage_asks_for_the_callback_again(
    kie_url: str, kie_api: httpx.Client, receiver: WebhookReceiver
) -> None:
    task_id, delivery = run_with_callback(kie_api, receiver)
    kie_api.put(
        "/_emulator/faults", json={"rate_limits": 1, "errors_on": ["record"]}
    ).raise_for_status()
    with pytest.raises(WebhookUnavailable, match=task_id):
        bridge(kie_url, delivery.headers, delivery.body)
    # The retry KIE sends once the bridge answered 503 is confirmed as usual.
    _, snapshot = bridge(kie_url, delivery.headers, delivery.body)
    assert (snapshot.provider_job_id, snapshot.phase) == (task_id, ProviderPhase.SUCCEEDED)


def test_drop_callbacks_sends_nothing(kie_api: httpx.Client, receiver: WebhookReceiver) -> None:
    name = hook_name()
    task_id = create(kie_api, task_body({"drop_webhooks": True}, callback=receiver.url(name)))
    wait_state(kie_api, task_id)
    wait_for(
        lambda: events(kie_api, task_id),
        lambda found: any(e["type"] == "webhook_dropped" for e in found),
        what="the dropped callback",
    )
    assert receiver.deliveries(name) == []
    assert callback_attempts(kie_api, task_id) == []


def test_duplicate_callbacks_repeat_the_same_body(
    kie_api: httpx.Client, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    task_id = create(kie_api, task_body({"duplicate_webhooks": 2}, callback=receiver.url(name)))
    deliveries = receiver.wait_count(name, 3)
    assert {d.body for d in deliveries} == {deliveries[0].body}
    attempts = wait_for(
        lambda: callback_attempts(kie_api, task_id),
        lambda found: len(found) == 3,
        what="three attempts",
    )
    assert [a["duplicate"] for a in attempts] == [False, True, True]


def test_failed_deliveries_are_retried(kie_api: httpx.Client, receiver: WebhookReceiver) -> None:
    name = hook_name()
    receiver.answer(name, [500, 503])
    task_id = create(kie_api, task_body(callback=receiver.url(name)))
    deliveries = receiver.wait_count(name, 3)
    assert all(d.json["data"]["state"] == "success" for d in deliveries)
    attempts = callback_attempts(kie_api, task_id)
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 503), (3, 200)]


def test_unreachable_receiver_gets_every_retry(kie_api: httpx.Client) -> None:
    task_id = create(kie_api, task_body(callback="http://127.0.0.1:9/hook"))  # nothing listens
    attempts = wait_for(
        lambda: callback_attempts(kie_api, task_id),
        lambda found: len(found) == 1 + len(CALLBACK_RETRY_DELAYS),
        what="all retries",
    )
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert all(a["status_code"] is None and a["error"] for a in attempts)


def test_no_callback_url_no_callback(kie_api: httpx.Client) -> None:
    task_id = create(kie_api, task_body())
    wait_state(kie_api, task_id)
    assert callback_attempts(kie_api, task_id) == []
