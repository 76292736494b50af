"""KIE.ai: market tasks (`createTask` + `recordInfo`), completion callbacks, no cancel.

Protocol notes in shared/reference/providers.md §3.

- **Errors live in the body.** KIE answers `{"code": N, "msg": …, "data": …}`, usually with HTTP
  200 whatever N is, so the body code decides and the HTTP status only matters when the body is
  not KIE's envelope (a proxy's error page, an unknown route's real 404). Code 429 is
  `ProviderRateLimited` (KIE sends no retry hint; a `Retry-After` header is honoured if one
  comes); 455 (maintenance), 500 and other 5xx outages are `ProviderUnavailable`. Two
  5xx-looking codes are answers about the request, not outages: 501 "Generation Failed" and
  505 "Feature Disabled" fail the same way on a retry, so they are `ProviderRejected` like the
  4xx codes (401 auth, 402 credits, 422 validation or "recordInfo is null", 433 sub-key limit).
- **States.** `waiting`, `queuing` → QUEUED; `generating` → RUNNING; `success`, `fail` terminal.
  Unknown states keep the job waiting. `resultJson` is a JSON *string* (`{"resultUrls": […]}`)
  and needs a second parse.
- **No cancel endpoint.** `cancel` returns the task's current snapshot: the task runs on at KIE
  (and is billed), and the workflow simply stops following it and never copies its outputs.
- **No training**, and `submit` is not idempotent: KIE takes no client key and lists no tasks,
  so a create whose answer was lost can't be found again (`lookup = False`). media.submit
  never retries such a create: the workflow waits for the lost task's callback instead, which
  names it (its URL carries the job's token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic_settings import SettingsConfigDict

from core.contracts import JobKind, ProviderPhase, ProviderRef, ProviderSnapshot, SubmitRequest
from core.settings import ProviderSettings, Settings
from core.usage.costs import JobCost, priced, quantity
from providers.base import (
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    SendGate,
    WebhookRejected,
    WebhookUnavailable,
    gate_extensions,
)
from providers.http_errors import raise_for_status, retry_after_seconds
from providers.inputs import RequiredInput, missing_input
from providers.spec import EmulatorSpec, ProviderSpec

NAME = "kie"
DEFAULT_BASE_URL = "https://api.kie.ai"


class KieSettings(ProviderSettings):
    """KIE_*: market tasks; callbacks signed with the account's webhookHmacKey when it has one."""

    model_config = SettingsConfigDict(env_prefix="KIE_")

    api_key: str = ""
    base_url: str = DEFAULT_BASE_URL
    webhook_hmac_key: str = ""
    # Callbacks without a valid signature are refused unless this is set explicitly.
    allow_unsigned_callbacks: bool = False


CREATE_PATH = "/api/v1/jobs/createTask"
RECORD_PATH = "/api/v1/jobs/recordInfo"

PHASES: dict[str, ProviderPhase] = {
    "waiting": ProviderPhase.QUEUED,
    "queuing": ProviderPhase.QUEUED,
    "generating": ProviderPhase.RUNNING,
    "success": ProviderPhase.SUCCEEDED,
    "fail": ProviderPhase.FAILED,
}

RATE_LIMITED_CODE = 429
# Codes that say something about the request itself: the same request fails the same way again.
REJECTED_CODES = frozenset({400, 401, 402, 403, 404, 413, 422, 433, 501, 505})
# Outages whatever the number looks like (455: maintenance); other 5xx codes are outages too.
UNAVAILABLE_CODES = frozenset({408, 455, 500, 502, 503, 504})

TIMESTAMP_HEADER = "x-webhook-timestamp"
SIGNATURE_HEADER = "x-webhook-signature"

# A callback's state before the bridge has re-read the task: says nothing new to the workflow.
UNCONFIRMED_STATUS = "callback-unconfirmed"

# Segments may hold `:` (version tags); never dots alone (see MODEL_SEGMENT).
_MODEL = re.compile(r"^(?!\.+(?:/|$))[\w.-]+(?:/(?!\.+(?:/|$))[\w.:-]+)*$", re.ASCII)

log = logging.getLogger(__name__)


REQUIRED_INPUT: RequiredInput = {
    JobKind.GENERATION: [("prompt",)],
    JobKind.EDIT: [("prompt",), ("image_urls", "image_url")],
    JobKind.UPSCALE: [("image_url",)],
    JobKind.VIDEO: [("prompt",)],
}
NO_TRAINING = "KIE has no training API"


def input_error(kind: JobKind, payload: Mapping[str, Any]) -> str | None:
    """What the input lacks for `kind` at KIE, or None (checked at the API edge)."""
    if kind == JobKind.TRAINING:
        return NO_TRAINING
    return missing_input(kind, payload, REQUIRED_INPUT)


def model_reference_error(model: str, kind: JobKind) -> str | None:
    """Why `model` can't be used for `kind` on KIE, or None when it can (checked at the API)."""
    if kind == JobKind.TRAINING:
        return NO_TRAINING
    if not _MODEL.match(model):
        return "model must be a KIE market model name, e.g. 'google/nano-banana'"
    return None


def body_code(body: Any) -> int | None:
    """The envelope's `code` as an int (some gateways send it as a string), or None."""
    if not isinstance(body, dict):
        return None
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.strip().isdigit():
        return int(code)
    return None


def unwrap(response: httpx.Response) -> Any:
    """The `data` of a code-200 envelope, or the provider error the code (or status) means."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    code = body_code(body)
    if code is None:
        raise_for_status(response)  # a non-2xx answer that isn't KIE's envelope
        raise ProviderUnavailable(f"{response.request.url}: answer is not KIE's {{code, msg}} body")
    if code == 200:
        return body.get("data")
    message = f"KIE code {code}: {_message(body)}"
    if code == RATE_LIMITED_CODE:
        raise ProviderRateLimited(retry_after_seconds(response, body), message)
    # An envelope with an error code is KIE's own verdict on the request: no task was made.
    if code in UNAVAILABLE_CODES:
        raise ProviderUnavailable(message, answered=True)
    if code in REJECTED_CODES or 400 <= code < 500:
        raise ProviderRejected(message, code)
    raise ProviderUnavailable(message, answered=True)


def _message(body: Mapping[str, Any]) -> str:
    for key in ("msg", "message"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return "no message"


def task_id_of(data: Mapping[str, Any]) -> str | None:
    """recordInfo says `taskId`; some callback samples say `task_id`. Accept both."""
    for key in ("taskId", "task_id"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def parse_result_json(value: Any) -> dict[str, Any]:
    """`resultJson` decoded: a JSON string normally, tolerated as an object; {} when empty."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError as exc:
            raise ProviderUnavailable(f"KIE resultJson is not JSON: {value[:200]!r}") from exc
        if isinstance(decoded, dict):
            return decoded
    raise ProviderUnavailable(f"KIE resultJson is not a JSON object: {str(value)[:200]!r}")


def _iso_from_millis(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, UTC).isoformat()


def snapshot_from(data: Any) -> ProviderSnapshot:
    """recordInfo's `data` (or a callback's) as a snapshot."""
    if not isinstance(data, Mapping):
        raise ProviderUnavailable("KIE answer has no task data")
    task_id = task_id_of(data)
    state = data.get("state")
    if task_id is None or not isinstance(state, str):
        raise ProviderUnavailable("KIE task data without taskId or state")
    phase = PHASES.get(state, ProviderPhase.RUNNING)  # unknown states: keep waiting
    output_urls: list[str] = []
    output_data: dict[str, Any] = {}
    error: str | None = None
    if phase == ProviderPhase.SUCCEEDED:
        result = parse_result_json(data.get("resultJson"))
        urls = result.get("resultUrls")
        if isinstance(urls, list):
            output_urls = [u for u in urls if isinstance(u, str) and u.startswith("http")]
        if "resultObject" in result:  # text models answer an object instead of files
            output_data["resultObject"] = result["resultObject"]
    elif phase == ProviderPhase.FAILED:
        message = str(data.get("failMsg") or "KIE reported the task failed")
        fail_code = data.get("failCode")
        error = f"{message} (failCode {fail_code})" if fail_code not in (None, "") else message
    return ProviderSnapshot(
        provider_job_id=task_id,
        provider_status=state,
        phase=phase,
        output_urls=output_urls,
        output_data=output_data,
        error=error,
        completed_at=_iso_from_millis(data.get("completeTime")),
        usage=usage_of(data),
    )


# recordInfo's accounting: `creditsConsumed`, the credits the task cost (what KIE bills; the
# field name is UNCONFIRMED: seen in clients, not in the docs), and `costTime` (milliseconds).
USAGE_FIELDS = ("creditsConsumed", "costTime")


def usage_of(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in USAGE_FIELDS if quantity(data, k) is not None}


def job_cost(settings: Settings, model: str, usage: Mapping[str, Any]) -> JobCost | None:
    """`creditsConsumed` times the price of a credit (PROVIDER_PRICES)."""
    return priced(settings, NAME, model, usage, "creditsConsumed", "kie:creditsConsumed")


class KieProvider:
    name = NAME
    lookup = False  # KIE lists no tasks

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, api_key: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}

    async def submit(
        self, request: SubmitRequest, *, gate: SendGate | None = None
    ) -> ProviderSnapshot:
        if request.kind == JobKind.TRAINING:
            raise ProviderRejected(NO_TRAINING)
        body: dict[str, Any] = {"model": request.model, "input": dict(request.input)}
        if request.webhook_url:
            body["callBackUrl"] = request.webhook_url
        response = await self._http.post(
            f"{self._base}{CREATE_PATH}",
            json=body,
            headers=self._headers,
            extensions=gate_extensions(gate),
        )
        data = unwrap(response)
        task_id = task_id_of(data) if isinstance(data, Mapping) else None
        if task_id is None:
            raise ProviderUnavailable("KIE createTask answered code 200 without a taskId")
        return ProviderSnapshot(
            provider_job_id=task_id, provider_status="waiting", phase=ProviderPhase.QUEUED
        )

    async def record_info(self, task_id: str) -> ProviderSnapshot:
        response = await self._http.get(
            f"{self._base}{RECORD_PATH}", params={"taskId": task_id}, headers=self._headers
        )
        snapshot = snapshot_from(unwrap(response))
        if snapshot.provider_job_id != task_id:
            raise ProviderUnavailable(
                f"KIE recordInfo for {task_id} answered task {snapshot.provider_job_id}"
            )
        return snapshot

    async def find(
        self, request: SubmitRequest, *, since: datetime | None = None
    ) -> list[ProviderSnapshot]:
        """Always []: KIE lists no tasks and takes no client-chosen task id or idempotency key
        (`taskId` is made by KIE and known only from the answer)."""
        return []

    async def get(self, ref: ProviderRef) -> ProviderSnapshot:
        return await self.record_info(ref.provider_job_id)

    async def cancel(self, ref: ProviderRef) -> ProviderSnapshot:
        """KIE can't cancel: the current snapshot. The task runs on; the workflow lets it go."""
        return await self.record_info(ref.provider_job_id)


def sign(hmac_key: str, task_id: str, timestamp: int) -> str:
    """base64(HMAC-SHA256(webhookHmacKey, f"{taskId}.{timestamp}")), as KIE signs callbacks."""
    digest = hmac.new(hmac_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def decode_callback(body: bytes) -> tuple[dict[str, Any], str]:
    """The callback's `data` and its task id, or WebhookRejected."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookRejected("body is not JSON") from exc
    if not isinstance(payload, dict):
        raise WebhookRejected("body is not a JSON object")
    data = payload.get("data")
    if not isinstance(data, dict):
        data = payload  # tolerate a bare task object
    task_id = task_id_of(data)
    if task_id is None:
        raise WebhookRejected("callback has no data.taskId / data.task_id")
    return data, task_id


class KieWebhooks:
    """Verifies KIE callbacks and answers with what `recordInfo` says, never with the body.

    KIE's signature covers `taskId.timestamp` only, so a valid signature proves the callback
    names a real task of ours and is fresh, but nothing about the state or result URLs in the
    body: a replayed or tampered body with a valid signature could claim success with any URLs.
    The body is therefore never trusted. `verify` checks the signature (an unsigned callback,
    or any callback while no key is configured, is refused unless `allow_unsigned`: the body
    is never believed anyway, but every callback costs a recordInfo call, and strangers must
    not spend our rate limit), then re-reads the task through `recordInfo`
    (`authoritative_snapshot`); `parse` returns that re-read snapshot. A callback naming another
    job's task gets that task's snapshot, which the workflow drops (its task id differs).

    `verify` and `parse` are separate calls in the webhook bridge (and `parse` is synchronous),
    so the re-read snapshot is kept between them, keyed by the body's digest, in a small LRU.
    If the re-read fails for a passing reason (KIE rate limit or outage), `verify` raises
    WebhookUnavailable: the bridge answers 503 so KIE sends the callback again, and the poll
    fallback finds the state meanwhile. A task id KIE says it doesn't know is rejected
    (answered 401). Should `parse` ever miss the re-read (evicted from the LRU), it returns a
    snapshot carrying only the task id and a QUEUED phase, which can't move the workflow.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        hmac_key: str | None,
        allow_unsigned: bool = False,
        tolerance_seconds: int = 300,
        clock: Callable[[], float] = time.time,
        confirmed_cache_size: int = 1024,
    ) -> None:
        self._provider = KieProvider(http, base_url=base_url, api_key=api_key)
        self._hmac_key = hmac_key or None
        self._allow_unsigned = allow_unsigned
        self._tolerance = tolerance_seconds
        self._clock = clock
        self._confirmed: OrderedDict[str, ProviderSnapshot] = OrderedDict()
        self._cache_size = confirmed_cache_size

    def check_signature(self, headers: Mapping[str, str], task_id: str) -> str | None:
        """Raise WebhookRejected unless signed by our key within the tolerance.

        Returns `taskId.timestamp` as the message id when signed. With `allow_unsigned`, a
        callback without signature headers (or any, while no key is set) passes unchecked.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        timestamp = lowered.get(TIMESTAMP_HEADER)
        signature = lowered.get(SIGNATURE_HEADER)
        if self._hmac_key is None or not timestamp or not signature:
            if self._allow_unsigned:
                return None
            if self._hmac_key is None:
                raise WebhookRejected(
                    "unsigned KIE callbacks are refused: set KIE_WEBHOOK_HMAC_KEY "
                    "(or KIE_ALLOW_UNSIGNED_CALLBACKS=true)"
                )
            raise WebhookRejected("missing X-Webhook-Timestamp or X-Webhook-Signature")
        try:
            sent_at = int(timestamp)
        except ValueError as exc:
            raise WebhookRejected("X-Webhook-Timestamp is not a number") from exc
        if abs(self._clock() - sent_at) > self._tolerance:
            raise WebhookRejected("X-Webhook-Timestamp is outside the tolerance window")
        expected = sign(self._hmac_key, task_id, sent_at)
        if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
            raise WebhookRejected("X-Webhook-Signature does not match")
        return f"{task_id}.{sent_at}"

    async def authoritative_snapshot(self, body: bytes) -> ProviderSnapshot:
        """The callback's task as `recordInfo` describes it (the body's claims are ignored)."""
        _, task_id = decode_callback(body)
        return await self._provider.record_info(task_id)

    async def verify(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Check the signature, then re-read the task for `parse`; WebhookRejected if unknown."""
        _, task_id = decode_callback(body)
        message_id = self.check_signature(headers, task_id)
        try:
            snapshot = await self._provider.record_info(task_id)
        except ProviderRejected as exc:
            raise WebhookRejected(f"KIE does not confirm task {task_id}: {exc}") from exc
        except ProviderError as exc:
            log.warning("KIE callback for %s not confirmed yet: %s", ascii(task_id), exc)
            raise WebhookUnavailable(f"could not re-read KIE task {task_id}: {exc}") from exc
        _warn_if_body_disagrees(body, snapshot)
        self._remember(body, snapshot)
        return message_id

    def parse(self, body: bytes) -> ProviderSnapshot:
        """The snapshot `verify` re-read for this body, else one that only names the task."""
        _, task_id = decode_callback(body)
        confirmed = self._confirmed.get(_digest(body))
        if confirmed is not None:
            return confirmed
        return ProviderSnapshot(
            provider_job_id=task_id, provider_status=UNCONFIRMED_STATUS, phase=ProviderPhase.QUEUED
        )

    def _remember(self, body: bytes, snapshot: ProviderSnapshot) -> None:
        key = _digest(body)
        self._confirmed[key] = snapshot
        self._confirmed.move_to_end(key)
        while len(self._confirmed) > self._cache_size:
            self._confirmed.popitem(last=False)


def _warn_if_body_disagrees(body: bytes, confirmed: ProviderSnapshot) -> None:
    """Log a callback whose claims differ from recordInfo (harmless here, but worth seeing)."""
    data, task_id = decode_callback(body)
    try:
        claimed = snapshot_from(data)
    except ProviderError:
        claimed = None
    if claimed is None or (claimed.provider_status, claimed.output_urls) != (
        confirmed.provider_status,
        confirmed.output_urls,
    ):
        log.warning(
            "KIE callback for %s disagrees with recordInfo (state %r); recordInfo wins",
            ascii(task_id),
            confirmed.provider_status,
        )


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# --- the spec -------------------------------------------------------------------------------

# No training: a kind missing here is refused at the API.
DEFAULT_MODELS = {
    JobKind.GENERATION: "google/nano-banana",
    JobKind.EDIT: "google/nano-banana-edit",
    JobKind.UPSCALE: "topaz/image-upscale",
    JobKind.VIDEO: "kling/v2-1-master-text-to-video",
}


def _client(config: KieSettings, _: Settings, http: httpx.AsyncClient) -> KieProvider:
    return KieProvider(http, base_url=config.base_url, api_key=config.api_key)


def _verifier(config: KieSettings, settings: Settings, http: httpx.AsyncClient) -> KieWebhooks:
    # Unsigned callbacks only when allowed explicitly: each one costs a recordInfo call.
    return KieWebhooks(
        http,
        base_url=config.base_url,
        api_key=config.api_key,
        hmac_key=config.webhook_hmac_key or None,
        allow_unsigned=config.allow_unsigned_callbacks,
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )


# The emulator (emulators/kie) as devstack runs it, and what it shares with the stack.
EMULATOR_KEY = "kie-emulator-key"
# The emulator signs callbacks with this key, as KIE does once an account has created one.
EMULATOR_HMAC_KEY = "autosync-dev-kie-webhook-hmac-key"


SPEC = ProviderSpec(
    name=NAME,
    label="KIE.ai",
    settings=KieSettings,
    key="api_key",
    default_models=DEFAULT_MODELS,
    phases=PHASES,
    client=_client,
    verifier=_verifier,
    input_error=input_error,
    model_error=model_reference_error,
    cost=job_cost,
    emulator=EmulatorSpec(
        module="emulators.kie",
        port=8120,
        port_var="KIE_EMULATOR_PORT",
        settings=lambda url: {
            "base_url": url,
            "api_key": EMULATOR_KEY,
            "webhook_hmac_key": EMULATOR_HMAC_KEY,
        },
        own=lambda data_dir: {"api_key": EMULATOR_KEY, "webhook_hmac_key": EMULATOR_HMAC_KEY},
    ),
)
