"""fal protocol pieces without a server: statuses, outputs, errors, Ed25519 webhook signatures.

The JWKS is served in process by an `httpx.MockTransport`, which also counts the fetches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.contracts import JobKind, ProviderPhase, ProviderRef, SubmitRequest
from providers.base import (
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    WebhookRejected,
)
from providers.fal import (
    FalProvider,
    FalWebhooks,
    app_id,
    error_message,
    model_reference_error,
    public_keys,
    result_snapshot,
)

JWKS_URL = "https://rest.test/.well-known/jwks.json"
USER = "user-1"
REQUEST_ID = "9f1c2d3e-0000-4000-8000-000000000001"
NOW = 1_800_000_000


def jwk(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).decode().rstrip("=")}


def signed(
    key: Ed25519PrivateKey,
    body: bytes,
    *,
    timestamp: int = NOW,
    request_id: str = REQUEST_ID,
) -> dict[str, str]:
    message = f"{request_id}\n{USER}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": USER,
        "X-Fal-Webhook-Timestamp": str(timestamp),
        "X-Fal-Webhook-Signature": key.sign(message).hex(),
    }


def webhook_body(status: str = "OK", payload: Any = None, **extra: Any) -> bytes:
    body = {
        "request_id": REQUEST_ID,
        "gateway_request_id": REQUEST_ID,
        "status": status,
        "payload": payload if payload is not None else {"images": [{"url": "https://cdn/a.png"}]},
        "error": None,
        "payload_error": None,
    }
    return json.dumps(body | extra).encode()


class Jwks:
    """A JWKS endpoint whose keys can change, counting its fetches; `down` makes it fail."""

    def __init__(self, *keys: Ed25519PrivateKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.down:
            return httpx.Response(503, text="unavailable")
        return httpx.Response(200, json={"keys": [jwk(k) for k in self.keys]})

    def verifier(self, clock: Callable[[], float] = lambda: NOW, **kwargs: Any) -> FalWebhooks:
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        return FalWebhooks(http, jwks_url=JWKS_URL, clock=clock, **kwargs)


# --- model ids, outputs, errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "app"),
    [
        ("fal-ai/flux/dev", "fal-ai/flux"),
        ("fal-ai/flux", "fal-ai/flux"),
        ("fal-ai/kling-video/v2/master/text-to-video", "fal-ai/kling-video"),
        ("workflows/acme/my-flow/run", "workflows/acme/my-flow"),
    ],
)
def test_request_urls_use_the_app_without_the_subpath(model: str, app: str) -> None:
    assert app_id(model) == app


def test_model_references() -> None:
    assert model_reference_error("fal-ai/flux/dev", JobKind.GENERATION) is None
    assert model_reference_error("fal-ai/flux-lora-fast-training", JobKind.TRAINING) is None
    assert model_reference_error("flux", JobKind.GENERATION) is not None
    assert model_reference_error("workflows/acme", JobKind.GENERATION) is not None
    assert model_reference_error("no spaces/allowed here", JobKind.GENERATION) is not None


@pytest.mark.parametrize(
    ("payload", "urls"),
    [
        (
            {"images": [{"url": "https://c/1.png"}, {"url": "https://c/2.png"}], "seed": 1},
            ["https://c/1.png", "https://c/2.png"],
        ),
        ({"video": {"url": "https://c/v.mp4", "content_type": "video/mp4"}}, ["https://c/v.mp4"]),
        ({"image": {"url": "https://c/up.png"}}, ["https://c/up.png"]),
        ({"images": [{"url": "data:image/png;base64,AAAA"}]}, []),
        ({"text": "https://not-a-file.example"}, []),
        # Files are the media fields' File objects, nothing deeper or elsewhere.
        ({"timings": {"debug": {"url": "http://169.254.169.254/latest/"}}}, []),
        ({"images": [{"meta": {"url": "http://127.0.0.1:8233/"}}]}, []),
        ({"images": [[{"url": "http://10.0.0.1/x.png"}]]}, []),
    ],
)
def test_output_urls_are_the_file_objects(payload: dict[str, Any], urls: list[str]) -> None:
    snapshot = result_snapshot("r", payload)
    assert snapshot.phase == ProviderPhase.SUCCEEDED
    assert snapshot.output_urls == urls


def test_training_output_is_recorded_by_name_and_its_files_are_stored() -> None:
    payload = {
        "diffusers_lora_file": {"url": "https://c/lora.safetensors"},
        "config_file": {"url": "https://c/c.json"},
        "debug": {"nested": {"url": "http://10.0.0.1/"}},
    }
    snapshot = result_snapshot("r", payload, JobKind.TRAINING)
    # Every top-level File object is a file to store (the URLs expire), in the result's order.
    assert snapshot.output_urls == ["https://c/lora.safetensors", "https://c/c.json"]
    assert snapshot.output_data == {
        "diffusers_lora_file": "https://c/lora.safetensors",
        "config_file": "https://c/c.json",
    }


def test_error_messages_from_both_fal_shapes() -> None:
    assert (
        error_message({"detail": "Runner disconnected", "error_type": "x"}) == "Runner disconnected"
    )
    validation = {"detail": [{"loc": ["body", "prompt"], "msg": "too long", "type": "value_error"}]}
    assert error_message(validation) == "body.prompt: too long"
    assert error_message("not a dict") is None


def fake_fal(routes: dict[tuple[str, str], httpx.Response]) -> FalProvider:
    """A FalProvider talking to canned answers keyed by (method, path)."""

    def handler(request: httpx.Request) -> httpx.Response:
        answer = routes[(request.method, request.url.path)]
        return httpx.Response(
            answer.status_code, headers=answer.headers, content=answer.content, request=request
        )

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return FalProvider(http, base_url="https://queue.test", api_key="k")


def ref(model: str = "fal-ai/flux/dev") -> ProviderRef:
    return ProviderRef("j", JobKind.GENERATION, "fal", REQUEST_ID, model=model)


STATUS = f"/fal-ai/flux/requests/{REQUEST_ID}/status"
RESULT = f"/fal-ai/flux/requests/{REQUEST_ID}"


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ("IN_QUEUE", ProviderPhase.QUEUED),
        ("IN_PROGRESS", ProviderPhase.RUNNING),
        ("SOME_NEW_STATUS", ProviderPhase.RUNNING),
    ],
)
async def test_waiting_statuses_map_to_phases(status: str, phase: ProviderPhase) -> None:
    body = {"status": status, "queue_position": 3, "logs": None}
    provider = fake_fal({("GET", STATUS): httpx.Response(202, json=body)})
    snapshot = await provider.get(ref())
    assert (snapshot.provider_status, snapshot.phase) == (status, phase)


async def test_completed_reads_the_result() -> None:
    provider = fake_fal(
        {
            ("GET", STATUS): httpx.Response(200, json={"status": "COMPLETED", "logs": None}),
            ("GET", RESULT): httpx.Response(200, json={"images": [{"url": "https://c/1.png"}]}),
        }
    )
    snapshot = await provider.get(ref())
    assert snapshot.phase == ProviderPhase.SUCCEEDED
    assert snapshot.output_urls == ["https://c/1.png"]


@pytest.mark.parametrize(
    ("status_body", "result", "phase", "error"),
    [
        # A model's validation error shows only in the result.
        (
            {"status": "COMPLETED"},
            httpx.Response(422, json={"detail": [{"loc": ["body", "prompt"], "msg": "too long"}]}),
            ProviderPhase.FAILED,
            "body.prompt: too long",
        ),
        # A platform failure shows on the status already.
        (
            {
                "status": "COMPLETED",
                "error": "Runner disconnected",
                "error_type": "runner_disconnected",
            },
            None,
            ProviderPhase.FAILED,
            "Runner disconnected (runner_disconnected)",
        ),
        (
            {
                "status": "COMPLETED",
                "error": "Request was cancelled",
                "error_type": "request_cancelled",
            },
            None,
            ProviderPhase.CANCELED,
            "Request was cancelled",
        ),
        # An error type in the header marks a 5xx as the model's answer, not a gateway hiccup.
        (
            {"status": "COMPLETED"},
            httpx.Response(
                504, json={"detail": "Timed out"}, headers={"x-fal-error-type": "request_timeout"}
            ),
            ProviderPhase.FAILED,
            "Timed out (request_timeout)",
        ),
    ],
)
async def test_how_a_completed_request_ended(
    status_body: dict[str, Any], result: httpx.Response | None, phase: ProviderPhase, error: str
) -> None:
    routes = {("GET", STATUS): httpx.Response(200, json=status_body | {"logs": None})}
    if result is not None:
        routes[("GET", RESULT)] = result
    snapshot = await fake_fal(routes).get(ref())
    assert (snapshot.phase, snapshot.error) == (phase, error)


async def test_an_expired_result_is_data_removed() -> None:
    provider = fake_fal(
        {
            ("GET", STATUS): httpx.Response(200, json={"status": "COMPLETED", "logs": None}),
            ("GET", RESULT): httpx.Response(410, json={"detail": "expired"}),
        }
    )
    snapshot = await provider.get(ref())
    assert snapshot.data_removed and snapshot.output_urls == []


async def test_transport_level_errors_raise_for_retry() -> None:
    completed = httpx.Response(200, json={"status": "COMPLETED", "logs": None})
    gateway = fake_fal(
        {("GET", STATUS): completed, ("GET", RESULT): httpx.Response(502, text="nginx")}
    )
    with pytest.raises(ProviderUnavailable):
        await gateway.get(ref())
    limited = fake_fal(
        {
            ("GET", STATUS): httpx.Response(
                429, json={"detail": "slow down"}, headers={"Retry-After": "4"}
            )
        }
    )
    with pytest.raises(ProviderRateLimited) as raised:
        await limited.get(ref())
    assert raised.value.retry_after == 4
    unauthorized = fake_fal(
        {
            ("GET", STATUS): completed,
            ("GET", RESULT): httpx.Response(401, json={"detail": "bad key"}),
        }
    )
    with pytest.raises(ProviderRejected):
        await unauthorized.get(ref())


async def test_submit_and_cancel_answers() -> None:
    submit = {"request_id": REQUEST_ID, "status_url": "…", "response_url": "…", "cancel_url": "…"}
    provider = fake_fal(
        {
            ("POST", "/fal-ai/flux/dev"): httpx.Response(200, json=submit),
            ("PUT", f"{RESULT}/cancel"): httpx.Response(
                202, json={"status": "CANCELLATION_REQUESTED"}
            ),
        }
    )
    request = SubmitRequest(
        "j", JobKind.GENERATION, "fal", "fal-ai/flux/dev", {"prompt": "x"}, None, []
    )
    submitted = await provider.submit(request)
    assert (submitted.provider_job_id, submitted.phase) == (REQUEST_ID, ProviderPhase.QUEUED)
    cancelled = await provider.cancel(ref())
    assert (cancelled.provider_status, cancelled.phase) == (
        "CANCELLATION_REQUESTED",
        ProviderPhase.CANCELED,
    )

    gone = fake_fal(
        {("PUT", f"{RESULT}/cancel"): httpx.Response(404, json={"status": "NOT_FOUND"})}
    )
    with pytest.raises(ProviderRejected):
        await gone.cancel(ref())


async def test_a_ref_without_its_model_is_refused() -> None:
    bare = ProviderRef(
        job_id="j", kind=JobKind.GENERATION, provider="fal", provider_job_id=REQUEST_ID
    )
    with pytest.raises(ProviderRejected, match="model"):
        await fake_fal({}).get(bare)


# --- webhook signatures -----------------------------------------------------------------------


async def test_a_signed_webhook_verifies_and_parses() -> None:
    key = Ed25519PrivateKey.generate()
    body = webhook_body()
    verifier = Jwks(Ed25519PrivateKey.generate(), key).verifier()  # any key of the set may sign
    assert await verifier.verify(signed(key, body), body) == REQUEST_ID
    snapshot = verifier.parse(body)
    assert (snapshot.provider_job_id, snapshot.phase) == (REQUEST_ID, ProviderPhase.SUCCEEDED)
    assert snapshot.output_urls == ["https://cdn/a.png"]


async def test_signature_rejections() -> None:
    key = Ed25519PrivateKey.generate()
    body = webhook_body()
    good = signed(key, body)
    verifier = Jwks(key).verifier(min_refresh_seconds=0)
    with pytest.raises(WebhookRejected, match="no fal key"):
        await verifier.verify(signed(Ed25519PrivateKey.generate(), body), body)  # wrong key
    with pytest.raises(WebhookRejected, match="no fal key"):
        await verifier.verify(good, webhook_body(status="ERROR"))  # changed body
    with pytest.raises(WebhookRejected, match="tolerance"):
        await verifier.verify(signed(key, body, timestamp=NOW - 301), body)  # stale
    with pytest.raises(WebhookRejected, match="tolerance"):
        await verifier.verify(signed(key, body, timestamp=NOW + 301), body)  # from the future
    with pytest.raises(WebhookRejected, match="missing"):
        await verifier.verify({}, body)
    with pytest.raises(WebhookRejected, match="malformed"):
        await verifier.verify(good | {"X-Fal-Webhook-Signature": "zz"}, body)
    other = signed(key, body, request_id="someone-else")
    with pytest.raises(WebhookRejected, match="differs"):
        await verifier.verify(other, body)  # validly signed, but for another request
    assert await verifier.verify(signed(key, body, timestamp=NOW - 299), body) == REQUEST_ID


async def test_a_validly_signed_webhook_of_another_fal_account_is_refused() -> None:
    # fal signs every customer's webhooks with the same keys; the signed user id tells them apart.
    key = Ed25519PrivateKey.generate()
    body = webhook_body()
    ours = Jwks(key).verifier(user_id=USER)
    assert await ours.verify(signed(key, body), body) == REQUEST_ID
    with pytest.raises(WebhookRejected, match="not our fal account"):
        await Jwks(key).verifier(user_id="our-account").verify(signed(key, body), body)
    tampered = signed(key, body) | {"X-Fal-Webhook-User-Id": "our-account"}
    with pytest.raises(WebhookRejected, match="no fal key"):
        await Jwks(key).verifier(user_id="our-account").verify(tampered, body)  # it is signed


async def test_keys_are_cached_and_refetched_once_for_an_unknown_signer() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    jwks = Jwks(old)
    verifier = jwks.verifier(min_refresh_seconds=0)
    body = webhook_body()
    for _ in range(3):
        await verifier.verify(signed(old, body), body)
    assert jwks.fetches == 1  # cached

    jwks.keys = [new]  # fal rotated its key
    assert await verifier.verify(signed(new, body), body) == REQUEST_ID
    assert jwks.fetches == 2  # one refetch, then it verifies

    with pytest.raises(WebhookRejected):
        await verifier.verify(signed(Ed25519PrivateKey.generate(), body), body)
    assert jwks.fetches == 3  # a forged signature costs one refetch, no more


async def test_forged_signatures_cannot_make_us_hammer_the_jwks() -> None:
    key = Ed25519PrivateKey.generate()
    jwks = Jwks(key)
    verifier = jwks.verifier(min_refresh_seconds=3600)
    body = webhook_body()
    await verifier.verify(signed(key, body), body)
    for _ in range(5):
        with pytest.raises(WebhookRejected):
            await verifier.verify(signed(Ed25519PrivateKey.generate(), body), body)
    assert jwks.fetches == 2  # the first verify, then one forced refresh


async def test_a_jwks_outage_keeps_the_cached_keys() -> None:
    key = Ed25519PrivateKey.generate()
    jwks = Jwks(key)
    verifier = jwks.verifier(jwks_ttl_seconds=0)  # every verify wants a fresh set
    body = webhook_body()
    await verifier.verify(signed(key, body), body)
    jwks.down = True
    assert await verifier.verify(signed(key, body), body) == REQUEST_ID

    cold = Jwks(key)
    cold.down = True
    with pytest.raises(WebhookRejected, match="JWKS"):
        await cold.verifier().verify(signed(key, body), body)


async def test_a_webhook_signed_now_passes_the_real_clock() -> None:
    key = Ed25519PrivateKey.generate()
    body = webhook_body()
    headers = signed(key, body, timestamp=int(time.time()))
    request_id = await Jwks(key).verifier(clock=time.time).verify(headers, body)
    assert request_id == REQUEST_ID


def test_public_keys_skip_what_is_not_ed25519() -> None:
    key = Ed25519PrivateKey.generate()
    jwks = {
        "keys": [
            {"kty": "RSA", "n": "x", "e": "AQAB"},
            {"kty": "OKP", "crv": "X25519", "x": "AA"},
            jwk(key),
        ]
    }
    assert len(public_keys(jwks)) == 1
    assert public_keys({"nope": 1}) == []


@pytest.mark.parametrize(
    ("body", "phase", "error"),
    [
        (
            webhook_body(
                "ERROR",
                {"detail": [{"loc": ["body"], "msg": "bad input"}]},
                error="Invalid status code: 422",
            ),
            ProviderPhase.FAILED,
            "body: bad input",
        ),
        (
            webhook_body(
                "ERROR", {"detail": "Request was cancelled", "error_type": "request_cancelled"}
            ),
            ProviderPhase.CANCELED,
            "Request was cancelled",
        ),
        (
            json.dumps(
                {
                    "request_id": REQUEST_ID,
                    "status": "OK",
                    "payload": None,
                    "payload_error": "not serialisable",
                }
            ).encode(),
            ProviderPhase.RUNNING,
            None,
        ),
    ],
)
def test_parse_error_and_nudge_webhooks(
    body: bytes, phase: ProviderPhase, error: str | None
) -> None:
    snapshot = FalWebhooks(httpx.AsyncClient()).parse(body)
    assert (snapshot.phase, snapshot.error) == (phase, error)


def test_parse_rejects_what_is_not_a_fal_webhook() -> None:
    verifier = FalWebhooks(httpx.AsyncClient())
    with pytest.raises(WebhookRejected):
        verifier.parse(b"not json")
    with pytest.raises(WebhookRejected):
        verifier.parse(b'{"status": "OK"}')
