"""Replicate protocol pieces without a server: statuses, outputs, errors, signatures."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from core.contracts import JobKind, ProviderPhase, SubmitRequest
from providers import standard_webhooks
from providers.base import (
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    WebhookRejected,
)
from providers.http_errors import raise_for_status
from providers.replicate import ReplicateProvider, model_reference_error, snapshot_from

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("starting", ProviderPhase.QUEUED),
        ("processing", ProviderPhase.RUNNING),
        ("succeeded", ProviderPhase.SUCCEEDED),
        ("failed", ProviderPhase.FAILED),
        ("canceled", ProviderPhase.CANCELED),
        ("aborted", ProviderPhase.FAILED),
        ("some-new-status", ProviderPhase.RUNNING),
    ],
)
def test_every_status_maps_to_a_phase(status: str, phase: ProviderPhase) -> None:
    assert snapshot_from({"id": "p", "status": status}).phase == phase


def test_aborted_explains_itself() -> None:
    snap = snapshot_from({"id": "p", "status": "aborted", "error": None})
    assert snap.error is not None and "deadline" in snap.error


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        ("https://r.delivery/a/out.png", ["https://r.delivery/a/out.png"]),
        (["https://r/1.png", "https://r/2.png"], ["https://r/1.png", "https://r/2.png"]),
        (["a caption", "https://r/1.png"], ["https://r/1.png"]),
        (None, []),
        ("just text", []),
    ],
)
def test_output_urls_from_every_shape(output: object, urls: list[str]) -> None:
    assert snapshot_from({"id": "p", "status": "succeeded", "output": output}).output_urls == urls


@pytest.mark.parametrize(
    "output",
    [
        {"foo": "https://internal.example/secret"},
        {"video": "http://169.254.169.254/latest/meta-data/", "text": "hello"},
        [["http://127.0.0.1:8233/nested"]],
        [{"url": "http://10.0.0.1/x"}],
    ],
)
def test_urls_inside_objects_or_nested_lists_are_not_outputs(output: object) -> None:
    """A model is anyone's code: only `output` itself (a URL or a list of URLs) is a file."""
    snap = snapshot_from({"id": "p", "status": "succeeded", "output": output})
    assert snap.output_urls == []


def test_training_output_is_a_model_version_and_its_weights_file() -> None:
    data = {
        "id": "t",
        "status": "succeeded",
        "output": {"version": "me/m:abc", "weights": "https://w"},
    }
    snap = snapshot_from(data, JobKind.TRAINING)
    assert snap.output_data == {"version": "me/m:abc", "weights": "https://w"}
    # The weights URL expires like any output: it is a file to store.
    assert snap.output_urls == ["https://w"]
    no_file = snapshot_from({**data, "output": {"version": "me/m:abc", "weights": None}})
    assert no_file.output_urls == [] and no_file.output_data["version"] == "me/m:abc"


def _response(
    status: int, json: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status, json=json, headers=headers, request=httpx.Request("POST", "http://x")
    )


def test_429_waits_for_retry_after_from_body_or_header() -> None:
    with pytest.raises(ProviderRateLimited) as body:
        raise_for_status(_response(429, {"detail": "throttled", "retry_after": 7}))
    assert body.value.retry_after == 7
    with pytest.raises(ProviderRateLimited) as header:
        raise_for_status(_response(429, {"detail": "throttled"}, {"Retry-After": "3"}))
    assert header.value.retry_after == 3


def test_4xx_is_rejected_with_the_providers_message_and_5xx_is_retryable() -> None:
    with pytest.raises(ProviderRejected, match="Invalid version"):
        raise_for_status(
            _response(422, {"detail": "Invalid version or not permitted", "status": 422})
        )
    with pytest.raises(ProviderUnavailable):
        raise_for_status(_response(502, {"detail": "bad gateway"}))


def test_model_references() -> None:
    assert model_reference_error("owner/name", JobKind.GENERATION) is None
    assert model_reference_error("owner/name:" + "a" * 64, JobKind.UPSCALE) is None
    assert model_reference_error("a" * 64, JobKind.EDIT) is None
    assert model_reference_error("owner/name", JobKind.TRAINING) is not None
    assert model_reference_error("no spaces/allowed here", JobKind.GENERATION) is not None


def test_signature_interoperates_with_the_standardwebhooks_library() -> None:
    body = b'{"id":"p","status":"succeeded"}'
    now = int(time.time())
    ours = standard_webhooks.sign(SECRET, "msg_1", now, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": ours}
    Webhook(SECRET).verify(body.decode(), headers)  # theirs accepts ours
    theirs = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(now, UTC), body.decode())
    headers["webhook-signature"] = f"v1,bogus {theirs}"  # several signatures: one must match
    assert standard_webhooks.verify(SECRET, headers, body) == "msg_1"


def test_signature_rejections() -> None:
    body = b"{}"
    now = int(time.time())
    good = {
        "webhook-id": "m",
        "webhook-timestamp": str(now),
        "webhook-signature": standard_webhooks.sign(SECRET, "m", now, body),
    }
    with pytest.raises(WebhookRejected, match="missing"):
        standard_webhooks.verify(SECRET, {}, body)
    with pytest.raises(WebhookRejected, match="tolerance"):
        standard_webhooks.verify(SECRET, good, body, now=now + 301)
    with pytest.raises(WebhookRejected, match="matches"):
        standard_webhooks.verify(SECRET, good, b'{"x":1}')
    assert standard_webhooks.verify(SECRET, good, body, now=now + 299) == "m"


@pytest.mark.parametrize(
    ("configured", "sent"),
    [(None, ["completed"]), (["start", "completed"], ["start", "completed"])],
)
async def test_a_create_asks_for_the_configured_webhook_events(
    configured: list[str] | None, sent: list[str]
) -> None:
    """REPLICATE_WEBHOOK_EVENTS (the client's own setting) wins over the job's recorded list."""
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(201, json={"id": "p1", "status": "starting"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        client = ReplicateProvider(
            http, base_url="http://r.test", api_token="t", webhook_events=configured
        )
        await client.submit(
            SubmitRequest(
                job_id="j1", kind=JobKind.GENERATION, provider="replicate", model="o/m",
                input={"prompt": "x"}, webhook_url="http://api.test/webhooks/replicate?job_id=j1",
                webhook_events=["completed"],
            )
        )  # fmt: skip
    assert bodies[0]["webhook_events_filter"] == sent
