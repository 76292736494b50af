"""KIE protocol pieces without a server: states, resultJson, body codes, callback signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest

from core.contracts import JobKind, ProviderPhase
from providers.base import (
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    WebhookRejected,
    WebhookUnavailable,
)
from providers.kie import (
    UNCONFIRMED_STATUS,
    KieWebhooks,
    model_reference_error,
    parse_result_json,
    sign,
    snapshot_from,
    unwrap,
)

KEY = "hmac-key-from-the-kie-settings-page"
NOW = 1_800_000_000


def data(state: str, **extra: Any) -> dict[str, Any]:
    return {"taskId": "task_1", "state": state, **extra}


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("waiting", ProviderPhase.QUEUED),
        ("queuing", ProviderPhase.QUEUED),
        ("generating", ProviderPhase.RUNNING),
        ("success", ProviderPhase.SUCCEEDED),
        ("fail", ProviderPhase.FAILED),
        ("some-new-state", ProviderPhase.RUNNING),
    ],
)
def test_every_state_maps_to_a_phase(state: str, phase: ProviderPhase) -> None:
    assert snapshot_from(data(state, resultJson="")).phase == phase


def test_result_json_is_a_string_parsed_a_second_time() -> None:
    urls = ["https://tempfile.example/a.png", "https://tempfile.example/b.png"]
    snap = snapshot_from(
        data("success", resultJson=json.dumps({"resultUrls": urls}), completeTime=1698765432000)
    )
    assert snap.output_urls == urls
    assert snap.completed_at == "2023-10-31T15:17:12+00:00"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ('{"resultUrls":["https://x/1.png"]}', {"resultUrls": ["https://x/1.png"]}),
        ({"resultUrls": ["https://x/1.png"]}, {"resultUrls": ["https://x/1.png"]}),
        ("", {}),
        (None, {}),
    ],
)
def test_result_json_shapes(value: object, parsed: dict[str, Any]) -> None:
    assert parse_result_json(value) == parsed


@pytest.mark.parametrize("value", ["{not json", "[1, 2]", 42])
def test_malformed_result_json_is_retryable(value: object) -> None:
    with pytest.raises(ProviderUnavailable):
        parse_result_json(value)


def test_text_results_go_to_output_data() -> None:
    snap = snapshot_from(data("success", resultJson='{"resultObject": {"text": "hi"}}'))
    assert snap.output_urls == [] and snap.output_data == {"resultObject": {"text": "hi"}}


def test_failure_carries_message_and_code() -> None:
    failed = snapshot_from(data("fail", failCode="501", failMsg="Generation failed"))
    assert failed.error == "Generation failed (failCode 501)"
    assert snapshot_from(data("fail", failCode="", failMsg="")).error is not None


def test_results_before_success_are_ignored() -> None:
    snap = snapshot_from(data("generating", resultJson='{"resultUrls":["https://x/early.png"]}'))
    assert snap.output_urls == []


def test_task_data_without_id_or_state_is_retryable() -> None:
    with pytest.raises(ProviderUnavailable):
        snapshot_from({"state": "success"})
    with pytest.raises(ProviderUnavailable):
        snapshot_from(None)


def _response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(
        status, content=content, headers=headers, request=httpx.Request("POST", "http://kie")
    )


def test_code_200_unwraps_data() -> None:
    assert unwrap(_response({"code": 200, "msg": "success", "data": {"taskId": "t"}})) == {
        "taskId": "t"
    }
    assert unwrap(_response({"code": "200", "message": "success", "data": 1})) == 1


@pytest.mark.parametrize("status", [200, 429])
def test_code_429_is_rate_limited_whatever_the_http_status(status: int) -> None:
    with pytest.raises(ProviderRateLimited) as caught:
        unwrap(_response({"code": 429, "msg": "Rate limited"}, status, {"Retry-After": "7"}))
    assert caught.value.retry_after == 7


@pytest.mark.parametrize("code", [400, 401, 402, 404, 422, 433, 501, 505, 418])
def test_request_codes_are_rejected(code: int) -> None:
    with pytest.raises(ProviderRejected, match="insufficient") as caught:
        unwrap(_response({"code": code, "msg": "insufficient whatever", "data": None}))
    assert caught.value.status_code == code


@pytest.mark.parametrize("code", [455, 500, 502, 503, 599])
def test_outage_codes_are_retryable(code: int) -> None:
    with pytest.raises(ProviderUnavailable, match=f"KIE code {code}"):
        unwrap(_response({"code": code, "msg": "down"}))


def test_answers_without_the_envelope_fall_back_to_the_http_status() -> None:
    with pytest.raises(ProviderUnavailable):
        unwrap(_response(b"<html>bad gateway</html>", 502))
    with pytest.raises(ProviderRejected):
        unwrap(_response({"detail": "Not Found"}, 404))
    with pytest.raises(ProviderUnavailable, match="not KIE's"):
        unwrap(_response({"unexpected": True}))


def test_model_references() -> None:
    assert model_reference_error("google/nano-banana", JobKind.GENERATION) is None
    assert model_reference_error("kling/v2-1-master-text-to-video", JobKind.VIDEO) is None
    assert model_reference_error("nano-banana-2", JobKind.EDIT) is None
    assert model_reference_error("google/nano-banana", JobKind.TRAINING) is not None
    assert model_reference_error("no spaces allowed", JobKind.GENERATION) is not None


# --- Callback signatures --------------------------------------------------------------------


def test_signature_is_base64_hmac_sha256_of_task_id_dot_timestamp() -> None:
    expected = base64.b64encode(
        hmac.new(KEY.encode(), b"task_1.1800000000", hashlib.sha256).digest()
    ).decode()
    assert sign(KEY, "task_1", NOW) == expected


def _no_requests(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"unexpected request to {request.url}")


def verifier(
    key: str | None = KEY, now: float = NOW, *, allow_unsigned: bool = False
) -> KieWebhooks:
    """A verifier whose re-read must not happen (these checks come before it)."""
    return KieWebhooks(
        httpx.AsyncClient(transport=httpx.MockTransport(_no_requests)),
        base_url="http://kie.invalid",
        api_key="k",
        hmac_key=key,
        allow_unsigned=allow_unsigned,
        tolerance_seconds=300,
        clock=lambda: now,
    )


def signed(task_id: str = "task_1", timestamp: int = NOW, key: str = KEY) -> dict[str, str]:
    return {
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": sign(key, task_id, timestamp),
    }


def test_signature_checks() -> None:
    checker = verifier()
    assert checker.check_signature(signed(), "task_1") == f"task_1.{NOW}"
    lowered = {k.lower(): v for k, v in signed().items()}
    assert checker.check_signature(lowered, "task_1") == f"task_1.{NOW}"
    assert verifier(now=NOW + 299).check_signature(signed(), "task_1") is not None
    with pytest.raises(WebhookRejected, match="missing"):
        checker.check_signature({}, "task_1")
    with pytest.raises(WebhookRejected, match="not a number"):
        checker.check_signature({**signed(), "X-Webhook-Timestamp": "soon"}, "task_1")
    with pytest.raises(WebhookRejected, match="tolerance"):
        verifier(now=NOW + 301).check_signature(signed(), "task_1")
    with pytest.raises(WebhookRejected, match="tolerance"):
        verifier(now=NOW - 301).check_signature(signed(), "task_1")
    with pytest.raises(WebhookRejected, match="does not match"):
        checker.check_signature(signed(key="another-key"), "task_1")
    with pytest.raises(WebhookRejected, match="does not match"):
        checker.check_signature(signed("task_2"), "task_1")  # a signature names its task


@pytest.mark.parametrize("key", [None, "", KEY])
async def test_unsigned_callbacks_are_refused_by_default_before_any_request(
    key: str | None,
) -> None:
    body = json.dumps({"code": 200, "data": {"taskId": "task_1", "state": "success"}}).encode()
    with pytest.raises(WebhookRejected, match=r"unsigned|missing"):
        await verifier(key=key).verify({}, body)  # _no_requests: recordInfo never asked


def test_unsigned_callbacks_pass_only_when_allowed_explicitly() -> None:
    assert verifier(key=None, allow_unsigned=True).check_signature({}, "task_1") is None
    assert verifier(key=KEY, allow_unsigned=True).check_signature({}, "task_1") is None
    with pytest.raises(WebhookRejected, match="unsigned"):
        verifier(key=None).check_signature(signed(), "task_1")  # no key to check it with
    with pytest.raises(WebhookRejected, match="does not match"):
        verifier(key=KEY, allow_unsigned=True).check_signature(signed(key="x"), "task_1")


def test_parse_without_a_confirmed_read_says_nothing_new() -> None:
    lie = json.dumps(
        {
            "code": 200,
            "data": {
                "task_id": "task_1",
                "state": "success",
                "resultJson": '{"resultUrls":["https://evil.example/x.png"]}',
            },
        }
    ).encode()
    snap = verifier().parse(lie)
    assert snap.provider_job_id == "task_1"
    assert (snap.provider_status, snap.phase) == (UNCONFIRMED_STATUS, ProviderPhase.QUEUED)
    assert snap.output_urls == []


@pytest.mark.parametrize(
    "body", [b"not json", b"[1]", b'{"code": 200, "data": {"state": "success"}}']
)
async def test_bodies_without_a_task_id_are_rejected(body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        await verifier().verify(signed(), body)
    with pytest.raises(WebhookRejected):
        verifier().parse(body)


async def test_a_bad_signature_is_rejected_before_any_request() -> None:
    body = json.dumps({"code": 200, "data": {"taskId": "task_1", "state": "success"}}).encode()
    with pytest.raises(WebhookRejected, match="does not match"):
        await verifier(now=time.time()).verify(signed(timestamp=int(time.time()), key="x"), body)


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        ({"code": 429, "msg": "Rate Limited"}, WebhookUnavailable),
        ({"code": 455, "msg": "Maintenance"}, WebhookUnavailable),
        ({"code": 422, "msg": "recordInfo is null"}, WebhookRejected),
    ],
)
async def test_a_callback_kie_cannot_confirm_now_is_retried_one_it_denies_is_rejected(
    answer: dict[str, Any], raised: type[Exception]
) -> None:
    def record_info(request: httpx.Request) -> httpx.Response:
        assert request.url.params["taskId"] == "task_1"
        return httpx.Response(200, json=answer)

    checker = KieWebhooks(
        httpx.AsyncClient(transport=httpx.MockTransport(record_info)),
        base_url="http://kie.invalid",
        api_key="k",
        hmac_key=KEY,
        clock=lambda: NOW,
    )
    body = json.dumps({"code": 200, "data": {"taskId": "task_1", "state": "success"}}).encode()
    with pytest.raises(raised):
        await checker.verify(signed(), body)
