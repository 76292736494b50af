"""fal.ai: the queue API (`queue.fal.run`) and its Ed25519-signed webhooks.

Protocol notes in shared/reference/providers.md §2. fal shows three statuses: `IN_QUEUE`
(queued), `IN_PROGRESS` (running) and `COMPLETED`, which covers success, failure and a
cancel alike. How a request ended is read from the status's `error`/`error_type` (platform
failures) or, failing that, from its result (`GET .../requests/{id}`), which returns the
model's own status code and body: a model's 422 shows only there. So a poll that sees
`COMPLETED` fetches the result, and the snapshot carries the output file URLs.

The provider job id is fal's `request_id`, the only id a webhook carries. Status, result and
cancel URLs also need the app (`owner/app`, the model id without its subpath), taken from
`ProviderRef.model`.

A cancelled request: fal documents the cancel call, not what the request looks like after it.
The emulator (and this module) treat `error_type == "request_cancelled"` as cancelled; any
other ending with an error is a failure, which is also where a real cancel lands if fal names
it differently (UNCONFIRMED).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from core.contracts import JobKind, ProviderPhase, ProviderRef, ProviderSnapshot, SubmitRequest
from core.settings import ProviderSettings, Settings
from core.usage.costs import JobCost, priced, quantity
from providers.base import (
    ProviderRejected,
    ProviderUnavailable,
    SendGate,
    WebhookRejected,
    gate_extensions,
)
from providers.http_errors import raise_for_status
from providers.inputs import MODEL_SEGMENT, RequiredInput, missing_input
from providers.spec import EmulatorSpec, ProviderSpec

NAME = "fal"
DEFAULT_BASE_URL = "https://queue.fal.run"
DEFAULT_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"


class FalSettings(ProviderSettings):
    """FAL_*: the queue API, and the keys of its Ed25519-signed webhooks (cached this long)."""

    model_config = SettingsConfigDict(env_prefix="FAL_")

    api_key: str = ""
    base_url: str = DEFAULT_BASE_URL
    jwks_url: str = DEFAULT_JWKS_URL
    jwks_ttl_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # fal signs every customer's webhooks with one key: only events for this fal user count.
    user_id: str = ""


IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
PHASES: dict[str, ProviderPhase] = {
    IN_QUEUE: ProviderPhase.QUEUED,
    IN_PROGRESS: ProviderPhase.RUNNING,
}
CANCELLED_ERROR_TYPE = "request_cancelled"
# Cancel answers (fal.ai/docs/inference-api/queue/cancel).
CANCEL_ACCEPTED = frozenset({"OK", "CANCELLATION_REQUESTED"})
ALREADY_COMPLETED = "ALREADY_COMPLETED"

# Apps under these namespaces have three-part ids (`workflows/<owner>/<app>`), as in fal_client.
NAMESPACES = ("workflows", "comfy")
# Output keys holding the media itself; other top-level files (LoRA weights, configs) are
# also recorded by name in `output_data`.
MEDIA_KEYS = frozenset({"images", "image", "video", "videos", "audio", "audio_file"})

_MODEL = re.compile(rf"^{MODEL_SEGMENT}(/{MODEL_SEGMENT})+$", re.ASCII)

# --- model ids -------------------------------------------------------------------------------


def app_id(model: str) -> str:
    """`owner/app` of `owner/app[/subpath]` (`ns/owner/app` for namespaced apps)."""
    parts = model.strip("/").split("/")
    size = 3 if parts[0] in NAMESPACES else 2
    return "/".join(parts[:size])


REQUIRED_INPUT: RequiredInput = {
    JobKind.GENERATION: [("prompt",)],
    JobKind.EDIT: [("prompt",), ("image_url", "image_urls")],
    JobKind.UPSCALE: [("image_url",)],
    JobKind.VIDEO: [("prompt",)],
    JobKind.TRAINING: [("images_data_url",)],
}


def input_error(kind: JobKind, payload: Mapping[str, Any]) -> str | None:
    """What the input lacks for `kind` at fal, or None (checked at the API edge)."""
    return missing_input(kind, payload, REQUIRED_INPUT)


def model_reference_error(model: str, kind: JobKind) -> str | None:
    """Why `model` can't be used, or None when it can (checked at the API edge)."""
    parts = model.strip("/").split("/")
    needed = 3 if parts[0] in NAMESPACES else 2
    if not _MODEL.match(model.strip("/")) or len(parts) < needed:
        return "model must be a fal endpoint id such as 'fal-ai/flux/dev'"
    return None


# --- answers as snapshots -------------------------------------------------------------------


def error_message(body: Any) -> str | None:
    """The text of fal's error bodies: `{"detail": "..."}` or `{"detail": [{"msg": ...}]}`."""
    if not isinstance(body, dict):
        return None
    value = body.get("detail", body.get("error"))
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list):
        messages = [
            f"{'.'.join(str(p) for p in item.get('loc', []))}: {item['msg']}".lstrip(": ")
            for item in value
            if isinstance(item, dict) and isinstance(item.get("msg"), str)
        ]
        return "; ".join(messages) or None
    return None


def _file_url(value: Any) -> str | None:
    """The URL of a fal File object (`{"url": ..., "content_type": ...}`), or None."""
    if isinstance(value, dict):
        url = value.get("url")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return url
    return None


def media_urls(payload: Mapping[str, Any]) -> list[str]:
    """The files of a result: the File objects under its media keys, in order.

    Only those fields (`images: [File]`, `image`/`video`/...: File): a URL anywhere else in
    a model's answer is data it returns, not a file for us to fetch and serve.
    """
    urls: list[str] = []
    for key, value in payload.items():
        if key in MEDIA_KEYS:
            items = value if isinstance(value, list) else [value]
            urls += [url for item in items if (url := _file_url(item)) is not None]
    return urls


def result_snapshot(
    request_id: str,
    payload: Mapping[str, Any],
    kind: JobKind | None = None,
    usage: dict[str, Any] | None = None,
) -> ProviderSnapshot:
    """A successful result (from `GET .../requests/{id}` or an OK webhook).

    Its files are the media first, then the other top-level File objects (a trainer's
    `diffusers_lora_file`, `config_file`): every one is stored, as their URLs expire. The
    latter are also named in `output_data`, so a training says which file is which.
    """
    named = {
        key: url
        for key, value in payload.items()
        if key not in MEDIA_KEYS and (url := _file_url(value)) is not None
    }
    media = media_urls(payload)
    return ProviderSnapshot(
        provider_job_id=request_id,
        provider_status=COMPLETED,
        phase=ProviderPhase.SUCCEEDED,
        output_urls=media + [url for url in named.values() if url not in media],
        output_data=named,
        usage=usage or {},
    )


# A COMPLETED status's accounting: `metrics.inference_time`, the seconds fal ran the request
# (what its per-second billing counts). The webhook carries no metrics: see `usage`.
USAGE_FIELDS = ("inference_time",)


def usage_of(status: Any) -> dict[str, Any]:
    metrics = status.get("metrics") if isinstance(status, Mapping) else None
    if not isinstance(metrics, Mapping):
        return {}
    return {k: metrics[k] for k in USAGE_FIELDS if quantity(metrics, k) is not None}


def job_cost(settings: Settings, model: str, usage: Mapping[str, Any]) -> JobCost | None:
    """`metrics.inference_time` seconds times the model's price per second (PROVIDER_PRICES)."""
    return priced(settings, NAME, model, usage, "inference_time", "fal:metrics.inference_time")


def failed_snapshot(request_id: str, error: str, error_type: str | None) -> ProviderSnapshot:
    cancelled = error_type == CANCELLED_ERROR_TYPE
    return ProviderSnapshot(
        provider_job_id=request_id,
        provider_status=COMPLETED,
        phase=ProviderPhase.CANCELED if cancelled else ProviderPhase.FAILED,
        error=f"{error} ({error_type})" if error_type and not cancelled else error,
    )


def _error_type(response: httpx.Response, body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error_type"), str):
        return str(body["error_type"])
    header: str | None = response.headers.get("x-fal-error-type")
    return header


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# --- the queue client ------------------------------------------------------------------------


class FalProvider:
    name = NAME
    lookup = False  # fal lists no queue requests

    def __init__(
        self, http: httpx.AsyncClient, *, base_url: str = DEFAULT_BASE_URL, api_key: str
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Key {api_key}"}

    def _request_url(self, model: str, request_id: str) -> str:
        return f"{self._base}/{_model_path(app_id(model))}/requests/{quote(request_id, safe='')}"

    async def submit(
        self, request: SubmitRequest, *, gate: SendGate | None = None
    ) -> ProviderSnapshot:
        params = {"fal_webhook": request.webhook_url} if request.webhook_url else None
        response = await self._http.post(
            f"{self._base}/{_model_path(request.model)}",
            json=dict(request.input),
            params=params,
            headers=self._headers,
            extensions=gate_extensions(gate),
        )
        body = raise_for_status(response)
        request_id = body.get("request_id") if isinstance(body, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise ProviderUnavailable("fal submit answer without a request_id")
        return ProviderSnapshot(
            provider_job_id=request_id, provider_status=IN_QUEUE, phase=ProviderPhase.QUEUED
        )

    async def find(
        self, request: SubmitRequest, *, since: datetime | None = None
    ) -> list[ProviderSnapshot]:
        """Always []: fal's queue has no list of requests and takes no client-chosen request
        id or idempotency key (its `request_id` is made by fal and known only from the answer),
        so a submit whose answer was lost can't be found again."""
        return []

    async def get(self, ref: ProviderRef) -> ProviderSnapshot:
        return await self.status(_model_of(ref), ref.provider_job_id, ref.kind)

    async def status(
        self, model: str, request_id: str, kind: JobKind | None = None
    ) -> ProviderSnapshot:
        """Poll the status; on COMPLETED, read how it ended (and its outputs) from the result."""
        url = self._request_url(model, request_id)
        response = await self._http.get(
            f"{url}/status", params={"logs": "0"}, headers=self._headers
        )
        body = raise_for_status(response)
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, str):
            raise ProviderUnavailable(f"fal status of {request_id} without a status")
        if status != COMPLETED:
            # Unknown statuses: keep waiting, as for Replicate.
            phase = PHASES.get(status, ProviderPhase.RUNNING)
            return ProviderSnapshot(provider_job_id=request_id, provider_status=status, phase=phase)
        if body.get("error"):
            return failed_snapshot(request_id, str(body["error"]), body.get("error_type"))
        return await self.result(model, request_id, kind, usage=usage_of(body))

    async def usage(self, ref: ProviderRef) -> dict[str, Any]:
        """The accounting of a finished request, from its status (a webhook has none)."""
        url = self._request_url(_model_of(ref), ref.provider_job_id)
        response = await self._http.get(
            f"{url}/status", params={"logs": "0"}, headers=self._headers
        )
        return usage_of(raise_for_status(response))

    async def result(
        self,
        model: str,
        request_id: str,
        kind: JobKind | None = None,
        usage: dict[str, Any] | None = None,
    ) -> ProviderSnapshot:
        """The result of a COMPLETED request as a terminal snapshot."""
        response = await self._http.get(self._request_url(model, request_id), headers=self._headers)
        code = response.status_code
        body = _json(response)
        if response.is_success:
            if not isinstance(body, dict):
                raise ProviderUnavailable(f"fal result of {request_id} is not a JSON object")
            return result_snapshot(request_id, body, kind, usage)
        if code in (404, 410):
            # Past fal's retention (1 h, or 6 min for results of 10 KB and more).
            return ProviderSnapshot(
                provider_job_id=request_id,
                provider_status=COMPLETED,
                phase=ProviderPhase.SUCCEEDED,
                data_removed=True,
            )
        error_type = _error_type(response, body)
        model_error = code in (400, 422) or (error_type is not None and code not in (401, 403, 429))
        if not model_error:
            raise_for_status(response)  # auth, rate limit, gateway trouble: raises
        message = error_message(body) or response.text[:500] or f"HTTP {code}"
        return failed_snapshot(request_id, message, error_type)

    async def cancel(self, ref: ProviderRef) -> ProviderSnapshot:
        model = _model_of(ref)
        response = await self._http.put(
            f"{self._request_url(model, ref.provider_job_id)}/cancel", headers=self._headers
        )
        body = _json(response)
        status = body.get("status") if isinstance(body, dict) else None
        if status == ALREADY_COMPLETED:
            return await self.status(model, ref.provider_job_id, ref.kind)
        if response.is_success and status in CANCEL_ACCEPTED:
            # A queued request is gone; a running one got the signal, which its runner may
            # ignore. Either way the job is over for us.
            return ProviderSnapshot(
                provider_job_id=ref.provider_job_id,
                provider_status=str(status),
                phase=ProviderPhase.CANCELED,
            )
        if status == "NOT_FOUND":
            raise ProviderRejected(f"fal request {ref.provider_job_id} not found", 404)
        raise_for_status(response)
        raise ProviderUnavailable(f"unexpected fal cancel answer: {response.text[:200]}")


def _model_path(model: str) -> str:
    """A model id as URL path segments, each quoted; one that could climb out is refused."""
    if model_reference_error(model, JobKind.GENERATION) is not None:
        raise ProviderRejected(f"{model!r} is not a fal endpoint id")
    return "/".join(quote(part, safe="") for part in model.strip("/").split("/"))


def _model_of(ref: ProviderRef) -> str:
    # The app is part of every status/result/cancel URL but not of the request id.
    if not ref.model:
        raise ProviderRejected("a fal job needs its model to be polled or cancelled")
    return ref.model


# --- webhooks --------------------------------------------------------------------------------

HEADER_REQUEST_ID = "x-fal-webhook-request-id"
HEADER_USER_ID = "x-fal-webhook-user-id"
HEADER_TIMESTAMP = "x-fal-webhook-timestamp"
HEADER_SIGNATURE = "x-fal-webhook-signature"


def signed_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    return f"{request_id}\n{user_id}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def public_keys(jwks: Any) -> list[Ed25519PublicKey]:
    """The Ed25519 keys of a JWKS document; other key types are skipped."""
    keys: list[Ed25519PublicKey] = []
    entries = jwks.get("keys") if isinstance(jwks, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "OKP":
            continue
        if entry.get("crv") != "Ed25519" or not isinstance(entry.get("x"), str):
            continue
        x = entry["x"]
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys.append(Ed25519PublicKey.from_public_bytes(raw))
        except (ValueError, binascii.Error):
            continue
    return keys


@dataclass
class _CachedKeys:
    keys: list[Ed25519PublicKey]
    fetched_at: float


class FalWebhooks:
    """Verifies fal's webhook signatures with the keys of its JWKS, cached for `jwks_ttl`.

    With `user_id` (FAL_USER_ID), a validly signed webhook of another fal account is refused.

    A signature no cached key accepts makes one fresh fetch (a key rotation), at most every
    `min_refresh_seconds`, so forged webhooks can't make us hammer the JWKS endpoint.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        jwks_url: str = DEFAULT_JWKS_URL,
        tolerance_seconds: int = 300,
        jwks_ttl_seconds: float = 3600.0,
        min_refresh_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
        user_id: str | None = None,
    ) -> None:
        self._http = http
        self._user_id = user_id or None
        self._jwks_url = jwks_url
        self._tolerance = tolerance_seconds
        self._ttl = jwks_ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._cache: _CachedKeys | None = None
        self._last_forced: float | None = None
        self._lock = asyncio.Lock()

    async def verify(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Check signature, timestamp and body; return the request id or raise WebhookRejected."""
        lowered = {k.lower(): v for k, v in headers.items()}
        request_id = lowered.get(HEADER_REQUEST_ID)
        user_id = lowered.get(HEADER_USER_ID)
        timestamp = lowered.get(HEADER_TIMESTAMP)
        signature = lowered.get(HEADER_SIGNATURE)
        if not request_id or not user_id or not timestamp or not signature:
            raise WebhookRejected("missing X-Fal-Webhook-* headers")
        try:
            sent_at = int(timestamp)
            raw_signature = bytes.fromhex(signature)
        except ValueError as exc:
            raise WebhookRejected("malformed timestamp or signature") from exc
        if abs(self._clock() - sent_at) > self._tolerance:
            raise WebhookRejected("X-Fal-Webhook-Timestamp is outside the tolerance window")
        message = signed_message(request_id, user_id, timestamp, body)
        if not _any_verifies(await self._keys(), raw_signature, message):
            fresh = await self._keys(force=True)
            if fresh is None or not _any_verifies(fresh, raw_signature, message):
                raise WebhookRejected("no fal key matches the signature")
        if _body_request_id(body) not in (None, request_id):
            raise WebhookRejected("body request_id differs from X-Fal-Webhook-Request-Id")
        if self._user_id is not None and user_id != self._user_id:
            # fal signs every customer's webhooks with the same keys: the signed user id is
            # what says the event comes from our account.
            raise WebhookRejected("X-Fal-Webhook-User-Id is not our fal account")
        return request_id

    async def _keys(self, *, force: bool = False) -> list[Ed25519PublicKey] | None:
        """Cached keys (fetched if stale); with `force`, a fresh set or None if not allowed now."""
        async with self._lock:
            now = time.monotonic()
            if force:
                if self._last_forced is not None and now - self._last_forced < self._min_refresh:
                    return None
                self._last_forced = now
            elif self._cache is not None and now - self._cache.fetched_at < self._ttl:
                return self._cache.keys
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                if self._cache is not None and not force:
                    return self._cache.keys  # a JWKS outage: keep trusting what we had
                raise WebhookRejected(f"could not fetch the fal JWKS: {exc}") from exc
            self._cache = _CachedKeys(keys, now)
            return keys

    async def _fetch(self) -> list[Ed25519PublicKey]:
        response = await self._http.get(self._jwks_url)
        response.raise_for_status()
        keys = public_keys(response.json())
        if not keys:
            raise ValueError(f"{self._jwks_url} has no Ed25519 key")
        return keys

    def parse(self, body: bytes) -> ProviderSnapshot:
        """The terminal webhook as a snapshot.

        An OK webhook whose output fal could not serialise (`payload: null`) is only a nudge:
        it says RUNNING so the job keeps polling, and the poll reads the result.
        """
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected("body is not JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("request_id"), str):
            raise WebhookRejected("body is not a fal webhook")
        request_id = str(data["request_id"])
        payload = data.get("payload")
        if data.get("status") == "OK":
            if isinstance(payload, dict):
                return result_snapshot(request_id, payload)
            return ProviderSnapshot(
                provider_job_id=request_id,
                provider_status=COMPLETED,
                phase=ProviderPhase.RUNNING,
            )
        error_type = payload.get("error_type") if isinstance(payload, dict) else None
        message = error_message(payload) or str(data.get("error") or "fal request failed")
        return failed_snapshot(request_id, message, error_type)


def _any_verifies(keys: list[Ed25519PublicKey] | None, signature: bytes, message: bytes) -> bool:
    for key in keys or []:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


def _body_request_id(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("request_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


# --- the spec -------------------------------------------------------------------------------

DEFAULT_MODELS = {
    JobKind.GENERATION: "fal-ai/flux/dev",
    JobKind.EDIT: "fal-ai/flux-pro/kontext",
    JobKind.UPSCALE: "fal-ai/esrgan",
    JobKind.VIDEO: "fal-ai/kling-video/v2/master/text-to-video",
    JobKind.TRAINING: "fal-ai/flux-lora-fast-training",
}

# Raw statuses as job rows record them. COMPLETED ends a success, a failure and a cancel
# alike: read as success, so a failed job that says it is looked at again (the sweep asks fal).
# A cancel's answer (OK, CANCELLATION_REQUESTED) is recorded as the status of a cancelled job.
RECORDED_PHASES: dict[str, ProviderPhase] = {
    **PHASES,
    COMPLETED: ProviderPhase.SUCCEEDED,
    **dict.fromkeys(CANCEL_ACCEPTED, ProviderPhase.CANCELED),
}


def _client(config: FalSettings, _: Settings, http: httpx.AsyncClient) -> FalProvider:
    return FalProvider(http, base_url=config.base_url, api_key=config.api_key)


def _verifier(config: FalSettings, settings: Settings, http: httpx.AsyncClient) -> FalWebhooks:
    return FalWebhooks(
        http,
        jwks_url=config.jwks_url,
        tolerance_seconds=settings.webhook_tolerance_seconds,
        jwks_ttl_seconds=config.jwks_ttl_seconds,
        user_id=config.user_id or None,
    )


# The emulator (emulators/fal) as devstack runs it, and what it shares with the stack.
EMULATOR_KEY = "fal-emulator-key"
# The fal account the emulator signs webhooks as; the API refuses other accounts' webhooks.
EMULATOR_USER_ID = "autosync-dev-user"


SPEC = ProviderSpec(
    name=NAME,
    label="fal.ai",
    settings=FalSettings,
    key="api_key",
    default_models=DEFAULT_MODELS,
    phases=RECORDED_PHASES,
    client=_client,
    verifier=_verifier,
    input_error=input_error,
    model_error=model_reference_error,
    cost=job_cost,
    emulator=EmulatorSpec(
        module="emulators.fal",
        port=8110,
        port_var="FAL_EMULATOR_PORT",
        settings=lambda url: {
            "base_url": url,
            "api_key": EMULATOR_KEY,
            "jwks_url": f"{url}/.well-known/jwks.json",
            "user_id": EMULATOR_USER_ID,
        },
        own=lambda data_dir: {"api_key": EMULATOR_KEY, "user_id": EMULATOR_USER_ID},
    ),
)
