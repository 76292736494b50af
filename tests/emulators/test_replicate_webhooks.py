"""Webhooks from the Replicate emulator: events, Standard Webhooks signatures, retries, faults."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import replicate
from replicate.webhook import WebhookSigningSecret
from standardwebhooks.webhooks import Webhook

from tests.emulators.support import (
    RETRY_DELAYS,
    VERSION,
    Delivery,
    WebhookReceiver,
    create,
    get,
    timeline,
    wait_for,
    wait_status,
    webhook_attempts,
)


def hook_name() -> str:
    return uuid.uuid4().hex


def image_job(receiver: WebhookReceiver, name: str, **extra: Any) -> dict[str, Any]:
    faults = extra.pop("faults", None)
    payload: dict[str, Any] = {"prompt": "a lighthouse", "num_outputs": 2}
    if faults is not None:
        payload["_emulator"] = faults
    return {
        "version": f"acme/sdxl:{VERSION}",
        "input": payload,
        "webhook": receiver.url(name),
    } | extra


def completed(deliveries: list[Delivery]) -> list[Delivery]:
    return [d for d in deliveries if d.json["status"] == "succeeded"]


def test_lifecycle_sends_signed_webhooks_from_start_to_completed(
    api: httpx.Client, receiver: WebhookReceiver, webhook_secret: str
) -> None:
    name = hook_name()
    # Processing longer than the 500 ms throttle, so the logs and the output event both go out.
    body = image_job(receiver, name, faults={"processing_seconds": 1.2})
    created = create(api, body)
    assert created["status"] == "starting"
    assert "_emulator" not in created["input"]
    wait_status(api, created["id"], ("processing",))
    final = wait_status(api, created["id"])
    assert final["status"] == "succeeded"

    deliveries = receiver.wait_count(name, 4)
    statuses = [d.json["status"] for d in deliveries]
    assert statuses == ["starting", "processing", "processing", "succeeded"]
    assert deliveries[1].json["logs"].startswith("Using seed:")
    assert deliveries[2].json["output"] == final["output"][:1]  # first file shown mid-way
    assert deliveries[-1].json == final  # the terminal webhook carries the final state
    assert len({d.webhook_id for d in deliveries}) == 4
    events = [e["event"] for e in webhook_attempts(api, created["id"])]
    assert events == ["start", "logs", "output", "completed"]

    verifier = Webhook(webhook_secret)
    signing_secret = WebhookSigningSecret(key=webhook_secret)
    for delivery in deliveries:
        assert delivery.webhook_id.startswith("msg_")
        assert delivery.headers["content-type"] == "application/json"
        assert verifier.verify(delivery.body, delivery.headers)["id"] == created["id"]
        replicate.webhooks.validate(
            headers=delivery.headers, body=delivery.body.decode(), secret=signing_secret
        )


def test_events_filter_limits_what_is_sent(api: httpx.Client, receiver: WebhookReceiver) -> None:
    name = hook_name()
    job = create(api, image_job(receiver, name, webhook_events_filter=["completed"]))
    wait_status(api, job["id"])
    [delivery] = receiver.wait_count(name, 1)
    assert delivery.json["status"] == "succeeded"
    assert [e["event"] for e in webhook_attempts(api, job["id"])] == ["completed"]


def test_terminal_webhook_is_retried_with_the_same_id(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    receiver.answer(name, [500, 503])
    job = create(api, image_job(receiver, name, webhook_events_filter=["completed"]))
    deliveries = receiver.wait_count(name, 3)
    assert len({d.webhook_id for d in deliveries}) == 1
    assert all(d.json["status"] == "succeeded" for d in deliveries)
    attempts = webhook_attempts(api, job["id"])
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 503), (3, 200)]


def test_non_terminal_webhooks_are_not_retried(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    receiver.answer(name, [500])  # the `start` webhook fails once
    job = create(api, image_job(receiver, name, webhook_events_filter=["start", "completed"]))
    wait_status(api, job["id"])
    deliveries = receiver.wait_count(name, 2)
    assert [d.json["status"] for d in deliveries] == ["starting", "succeeded"]
    attempts = webhook_attempts(api, job["id"])
    assert [(a["event"], a["attempt"], a["status_code"]) for a in attempts] == [
        ("start", 1, 500),
        ("completed", 1, 200),
    ]


def test_unreachable_receiver_gets_every_retry(api: httpx.Client) -> None:
    closed = "http://127.0.0.1:9/hook"  # discard port: nothing listens
    job = create(
        api,
        {
            "version": "acme/sdxl",
            "input": {},
            "webhook": closed,
            "webhook_events_filter": ["completed"],
        },
    )
    wait_status(api, job["id"])
    attempts = wait_for(
        lambda: webhook_attempts(api, job["id"]),
        lambda found: len(found) == 1 + len(RETRY_DELAYS),
        what="all retries",
    )
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert all(a["status_code"] is None and a["error"] for a in attempts)


def test_redirects_are_not_followed(api: httpx.Client, receiver: WebhookReceiver) -> None:
    name = hook_name()
    receiver.answer(name, [307, 200])
    job = create(api, image_job(receiver, name, webhook_events_filter=["completed"]))
    deliveries = receiver.wait_count(name, 2)
    assert deliveries[0].webhook_id == deliveries[1].webhook_id
    attempts = webhook_attempts(api, job["id"])
    assert [a["status_code"] for a in attempts] == [307, 200]


def test_drop_webhooks_sends_nothing(api: httpx.Client, receiver: WebhookReceiver) -> None:
    name = hook_name()
    job = create(api, image_job(receiver, name, faults={"drop_webhooks": True}))
    wait_status(api, job["id"])
    events = timeline(api, job["id"])["events"]
    assert not [e for e in events if e["type"] == "webhook"]
    dropped = [e["event"] for e in events if e["type"] == "webhook_dropped"]
    assert "start" in dropped and "completed" in dropped
    assert receiver.deliveries(name) == []


def test_drop_events_drops_only_those(api: httpx.Client, receiver: WebhookReceiver) -> None:
    name = hook_name()
    faults = {"drop_events": ["completed"]}
    job = create(
        api, image_job(receiver, name, faults=faults, webhook_events_filter=["start", "completed"])
    )
    wait_status(api, job["id"])
    [start] = receiver.wait_count(name, 1)
    assert start.json["status"] == "starting"
    events = timeline(api, job["id"])["events"]
    assert [e["event"] for e in events if e["type"] == "webhook_dropped"] == ["completed"]
    assert [e["event"] for e in events if e["type"] == "webhook"] == ["start"]


def test_duplicate_webhooks_repeat_the_same_message(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    job = create(
        api,
        image_job(
            receiver, name, faults={"duplicate_webhooks": 2}, webhook_events_filter=["completed"]
        ),
    )
    deliveries = receiver.wait_count(name, 3)
    assert len({d.webhook_id for d in deliveries}) == 1
    assert {d.body for d in deliveries} == {deliveries[0].body}
    duplicates = [a["duplicate"] for a in webhook_attempts(api, job["id"])]
    assert duplicates == [False, True, True]


def test_reorder_delivers_the_terminal_webhook_first(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    faults = {"reorder_webhooks": True, "processing_seconds": 1.2}
    job = create(api, image_job(receiver, name, faults=faults))
    wait_status(api, job["id"])
    deliveries = receiver.wait_count(name, 4)
    statuses = [d.json["status"] for d in deliveries]
    assert statuses[0] == "succeeded"
    assert sorted(statuses[1:]) == ["processing", "processing", "starting"]


def test_delayed_webhooks_wait_before_sending(api: httpx.Client, receiver: WebhookReceiver) -> None:
    name = hook_name()
    job = create(api, image_job(receiver, name, faults={"webhook_delay_seconds": 0.3}))
    wait_status(api, job["id"])
    receiver.wait_count(name, 2)
    attempts = wait_for(
        lambda: webhook_attempts(api, job["id"]),
        lambda found: bool(found) and found[-1]["event"] == "completed",
        what="completed webhook",
    )
    # 0.29: asyncio may wake a hair before the requested 0.3 s.
    assert all(a["sent_at"] - a["enqueued_at"] >= 0.29 for a in attempts)


def test_cancel_sends_a_terminal_webhook(api: httpx.Client, receiver: WebhookReceiver) -> None:
    name = hook_name()
    job = create(api, image_job(receiver, name, faults={"stay_starting": True}))
    canceled = api.post(f"/v1/predictions/{job['id']}/cancel").json()
    assert canceled["status"] == "canceled"
    deliveries = receiver.wait_count(name, 2)
    assert deliveries[-1].json == get(api, job["id"])
