"""Webhooks from the fal emulator: one terminal POST, Ed25519 signature, retries, faults."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from providers.base import WebhookRejected
from providers.fal import EMULATOR_USER_ID as FAL_EMULATOR_USER_ID
from tests.emulators.fal_support import (
    FAL_RETRY_DELAYS,
    submit,
    timeline,
    verify_delivery,
    wait_completed,
    webhook_attempts,
)
from tests.emulators.support import Delivery, WebhookReceiver, wait_for

pytest_plugins = ("tests.emulators.fal_fixtures",)

WEBHOOK_KEYS = {"request_id", "gateway_request_id", "status", "payload", "error", "payload_error"}


def hook_name() -> str:
    return uuid.uuid4().hex


def run_with_webhook(
    api: httpx.Client, receiver: WebhookReceiver, name: str, **faults: Any
) -> dict[str, Any]:
    submitted = submit(
        api, {"prompt": "a lighthouse"}, webhook=receiver.url(name), faults=faults or None
    )
    wait_completed(api, submitted)
    return submitted


def settled_attempts(api: httpx.Client, request_id: str, count: int) -> list[dict[str, Any]]:
    """The webhook attempts once `count` of them were made (the emulator logs each one)."""
    return wait_for(
        lambda: webhook_attempts(api, request_id),
        lambda found: len(found) >= count,
        what=f"{count} webhook attempts for {request_id}",
    )


def jwks_keys(fal_url: str) -> list[Ed25519PublicKey]:
    keys = httpx.get(f"{fal_url}/.well-known/jwks.json").raise_for_status().json()["keys"]
    assert keys and all(k["kty"] == "OKP" and k["crv"] == "Ed25519" for k in keys)
    return [
        Ed25519PublicKey.from_public_bytes(
            base64.urlsafe_b64decode(k["x"] + "=" * (-len(k["x"]) % 4))
        )
        for k in keys
    ]


def verifies_by_hand(fal_url: str, delivery: Delivery) -> bool:
    """fal's documented check, written out: any JWKS key over the four signed lines."""
    headers = delivery.headers
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(delivery.body).hexdigest(),
        ]
    ).encode()
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    for key in jwks_keys(fal_url):
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


def test_one_signed_terminal_webhook_with_the_result(
    fal_api: httpx.Client, fal_url: str, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    submitted = run_with_webhook(fal_api, receiver, name)
    request_id = submitted["request_id"]
    [delivery] = receiver.wait_count(name, 1)
    settled_attempts(fal_api, request_id, 1)
    assert len(receiver.deliveries(name)) == 1  # no progress events, only the terminal one

    body = delivery.json
    assert set(body) == WEBHOOK_KEYS
    assert body["request_id"] == body["gateway_request_id"] == request_id
    assert body["status"] == "OK"
    assert body["error"] is None and body["payload_error"] is None
    assert body["payload"] == fal_api.get(submitted["response_url"]).json()

    headers = delivery.headers
    assert headers["x-fal-webhook-request-id"] == request_id
    assert headers["x-fal-webhook-user-id"]
    assert int(headers["x-fal-webhook-timestamp"]) > 0
    assert len(bytes.fromhex(headers["x-fal-webhook-signature"])) == 64
    assert verifies_by_hand(fal_url, delivery)
    assert verify_delivery(fal_url, delivery) == request_id


def test_the_signed_user_id_is_the_emulators_account(
    fal_api: httpx.Client, fal_url: str, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    request_id = run_with_webhook(fal_api, receiver, name)["request_id"]
    [delivery] = receiver.wait_count(name, 1)
    # `make up` sets the API's FAL_USER_ID to the user id the emulator signs with.
    assert delivery.headers["x-fal-webhook-user-id"] == FAL_EMULATOR_USER_ID
    assert verify_delivery(fal_url, delivery, user_id=FAL_EMULATOR_USER_ID) == request_id
    with pytest.raises(WebhookRejected, match="not our fal account"):
        verify_delivery(fal_url, delivery, user_id="another-fal-customer")


def test_a_changed_body_no_longer_verifies(
    fal_api: httpx.Client, fal_url: str, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    run_with_webhook(fal_api, receiver, name)
    [delivery] = receiver.wait_count(name, 1)
    forged = delivery.body.replace(b'"OK"', b'"ERROR"')
    assert forged != delivery.body
    assert not verifies_by_hand(fal_url, Delivery(delivery.headers, forged))
    with pytest.raises(WebhookRejected):
        verify_delivery(fal_url, delivery, body=forged)


def test_a_model_error_sends_an_error_webhook(
    fal_api: httpx.Client, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    run_with_webhook(fal_api, receiver, name, fail="prompt is too long")
    [delivery] = receiver.wait_count(name, 1)
    body = delivery.json
    assert body["status"] == "ERROR"
    assert body["error"] == "Invalid status code: 422"
    assert body["payload"]["detail"][0]["msg"] == "prompt is too long"


def test_a_cancelled_request_sends_one_error_webhook(
    fal_api: httpx.Client, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    submitted = submit(fal_api, {}, webhook=receiver.url(name), faults={"stay_queued": True})
    fal_api.put(submitted["cancel_url"])
    [delivery] = receiver.wait_count(name, 1)
    assert delivery.json["status"] == "ERROR"
    assert delivery.json["payload"]["error_type"] == "request_cancelled"


def test_failed_deliveries_are_retried_until_one_succeeds(
    fal_api: httpx.Client, fal_url: str, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    receiver.answer(name, [500, 404])
    submitted = run_with_webhook(fal_api, receiver, name)
    deliveries = receiver.wait_count(name, 3)
    attempts = settled_attempts(fal_api, submitted["request_id"], 3)
    assert [a["status_code"] for a in attempts] == [500, 404, 200]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert len({d.body for d in deliveries}) == 1  # the same message each time
    assert all(verifies_by_hand(fal_url, d) for d in deliveries)  # each one signed afresh


def test_delivery_gives_up_after_the_retry_schedule(
    fal_api: httpx.Client, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    tries = 1 + len(FAL_RETRY_DELAYS)
    receiver.answer(name, [503] * (tries + 2))
    submitted = run_with_webhook(fal_api, receiver, name)
    attempts = settled_attempts(fal_api, submitted["request_id"], tries)
    assert len(attempts) == tries
    assert all(a["status_code"] == 503 for a in attempts)
    # Nothing more after the last retry: the receiver saw exactly the attempts made.
    assert len(receiver.wait_count(name, tries)) == tries


def test_drop_and_duplicate_faults(fal_api: httpx.Client, receiver: WebhookReceiver) -> None:
    dropped = hook_name()
    submitted = run_with_webhook(fal_api, receiver, dropped, drop_webhooks=True)
    events = [e["type"] for e in timeline(fal_api, submitted["request_id"])["events"]]
    assert "webhook_dropped" in events and "webhook" not in events
    assert receiver.deliveries(dropped) == []

    twice = hook_name()
    submitted = run_with_webhook(fal_api, receiver, twice, duplicate_webhooks=2)
    deliveries = receiver.wait_count(twice, 3)
    assert len({d.body for d in deliveries}) == 1
    attempts = settled_attempts(fal_api, submitted["request_id"], 3)
    assert [a["duplicate"] for a in attempts] == [False, True, True]


def test_wrong_key_fault_signs_with_a_key_not_in_the_jwks(
    fal_api: httpx.Client, fal_url: str, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    run_with_webhook(fal_api, receiver, name, webhook_wrong_key=True)
    [delivery] = receiver.wait_count(name, 1)
    assert not verifies_by_hand(fal_url, delivery)
    with pytest.raises(WebhookRejected, match="no fal key"):
        verify_delivery(fal_url, delivery)


def test_payload_error_fault_sends_no_payload(
    fal_api: httpx.Client, fal_url: str, receiver: WebhookReceiver
) -> None:
    name = hook_name()
    run_with_webhook(fal_api, receiver, name, webhook_payload_error=True)
    [delivery] = receiver.wait_count(name, 1)
    assert delivery.json["status"] == "OK"
    assert delivery.json["payload"] is None and delivery.json["payload_error"]
    assert verify_delivery(fal_url, delivery) == delivery.json["request_id"]
