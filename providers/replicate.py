"""Replicate: predictions (by version, `owner/name:version` or official model) and trainings.

Protocol notes in shared/reference/providers.md §1. Statuses `starting, processing` are
running; `succeeded, failed, canceled, aborted` are terminal (`aborted`: a deadline passed
before the prediction started, which is a failure for us, not a cancel).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from core.contracts import JobKind, ProviderPhase, ProviderRef, ProviderSnapshot, SubmitRequest
from core.settings import ProviderSettings, Settings
from core.usage.costs import JobCost, priced, quantity
from providers import standard_webhooks
from providers.base import (
    BulkAnswer,
    ProviderRejected,
    ProviderUnavailable,
    SendGate,
    WebhookRejected,
    gate_extensions,
)
from providers.http_errors import raise_for_status
from providers.inputs import MODEL_SEGMENT, RequiredInput, missing_input
from providers.spec import CallerCheck, EmulatorSpec, ProviderSpec

NAME = "replicate"


class ReplicateSettings(ProviderSettings):
    """REPLICATE_*: the account, where its API is, and its webhooks and trainings."""

    model_config = SettingsConfigDict(env_prefix="REPLICATE_")

    api_token: str = ""
    base_url: str = "https://api.replicate.com"
    # whsec_…; empty: fetched from the API at the first webhook
    webhook_secret: str = ""
    # The webhook events asked for (start, output, logs, completed): each one signals the job.
    webhook_events: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["completed"])
    # Trainings push versions only into models of this owner (empty: no trainings).
    training_owner: str = ""

    @field_validator("webhook_events", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


PHASES: dict[str, ProviderPhase] = {
    "starting": ProviderPhase.QUEUED,
    "processing": ProviderPhase.RUNNING,
    "succeeded": ProviderPhase.SUCCEEDED,
    "failed": ProviderPhase.FAILED,
    "canceled": ProviderPhase.CANCELED,
    "aborted": ProviderPhase.FAILED,
}

_ENDED = (ProviderPhase.SUCCEEDED, ProviderPhase.FAILED, ProviderPhase.CANCELED)

# How far back `find` looks in the account's list (newest first, 100 a page): the jobs an
# earlier attempt made are minutes old at most, and two pages bound the calls it costs.
FIND_MAX_PAGES = 2
# Replicate's clock and our database's may disagree: look this far before our job's creation.
FIND_CLOCK_MARGIN = timedelta(minutes=10)

_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_MODEL = re.compile(rf"^({MODEL_SEGMENT})/({MODEL_SEGMENT})$", re.ASCII)
_MODEL_VERSION = re.compile(rf"^({MODEL_SEGMENT})/({MODEL_SEGMENT}):([0-9a-f]{{64}})$", re.ASCII)

REQUIRED_INPUT: RequiredInput = {
    JobKind.GENERATION: [("prompt",)],
    JobKind.EDIT: [("prompt",), ("input_image", "image")],
    JobKind.UPSCALE: [("image", "input_image")],
    JobKind.VIDEO: [("prompt",)],
    JobKind.TRAINING: [("destination",)],
}


def input_error(kind: JobKind, payload: Mapping[str, Any]) -> str | None:
    """What the input lacks for `kind` at Replicate, or None (checked at the API edge)."""
    problem = missing_input(kind, payload, REQUIRED_INPUT)
    if problem is None and kind == JobKind.TRAINING:
        if not _MODEL.match(str(payload["destination"])):
            return "input.destination must be 'owner/model' (where the trained version is pushed)"
    return problem


def destination_error(destination: str, *, owner: str, user_id: str, is_admin: bool) -> str | None:
    """Why a training may not push into `destination`, or None.

    Our Replicate account owns every model a training writes to, so the destination is ours to
    choose: only models of REPLICATE_TRAINING_OWNER, and a user's own (`{user_id}-…`) unless
    an admin asks, so users can't overwrite each other's models or any other model we own.
    """
    if not owner:
        return (
            "trainings at Replicate are off: set REPLICATE_TRAINING_OWNER to the Replicate "
            "account whose models trainings may push to"
        )
    match = _MODEL.match(destination)
    if match is None or match.group(1) != owner:
        return f"input.destination must be '{owner}/<model name>' (got {destination!r})"
    if not is_admin and not match.group(2).startswith(f"{user_id}-"):
        return (
            f"input.destination: your models are named '{owner}/{user_id}-<name>' "
            f"(got {destination!r})"
        )
    return None


def model_reference_error(model: str, kind: JobKind) -> str | None:
    """Why `model` can't be used for `kind`, or None when it can (checked at the API edge)."""
    if kind == JobKind.TRAINING:
        if not _MODEL_VERSION.match(model):
            return "training needs a trainer as 'owner/name:<64-hex version>'"
        return None
    if _VERSION_ID.match(model) or _MODEL_VERSION.match(model) or _MODEL.match(model):
        return None
    return "model must be 'owner/name', 'owner/name:<64-hex version>' or a 64-hex version id"


def _segment(value: str) -> str:
    """`value` as one URL path segment: no `/` or `?` in it can reach another path."""
    if value.strip(".") == "":
        raise ProviderRejected(f"{value!r} is not a name Replicate knows")
    return quote(value, safe="")


# A training's `output`: the version it pushed, and its weights file (a URL, stored by us).
TRAINING_FIELDS = ("version", "weights")
TRAINING_FILES = ("weights",)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def output_urls_of(output: Any) -> list[str]:
    """The files of a prediction's `output`: a URL string, or a list whose items are.

    Only those shapes: a model is anyone's code, and a URL it tucks inside an object (or a
    nested list) is data it returns, not a file for us to fetch and serve.
    """
    if _is_url(output):
        return [output]
    if isinstance(output, list):
        return [item for item in output if _is_url(item)]
    return []


def snapshot_from(data: Mapping[str, Any], kind: JobKind | None = None) -> ProviderSnapshot:
    """A Prediction or Training object (from GET, create, cancel or a webhook) as a snapshot."""
    try:
        provider_job_id = str(data["id"])
        status = str(data["status"])
    except KeyError as exc:
        raise ProviderUnavailable(f"Replicate object without {exc.args[0]!r}") from exc
    phase = PHASES.get(status, ProviderPhase.RUNNING)  # unknown statuses: keep waiting
    output = data.get("output")
    output_data: dict[str, Any] = {}
    output_urls: list[str] = []
    if isinstance(output, dict) and (kind == JobKind.TRAINING or "version" in output):
        output_data = {k: output[k] for k in TRAINING_FIELDS if k in output}
        # The weights are a file like any output (its URL expires): stored with the rest.
        output_urls = [output[k] for k in TRAINING_FILES if _is_url(output.get(k))]
    elif output is not None:
        output_urls = output_urls_of(output)
    error = data.get("error")
    if status == "aborted" and not error:
        error = "aborted by Replicate: its deadline passed before the prediction started"
    return ProviderSnapshot(
        provider_job_id=provider_job_id,
        provider_status=status,
        phase=phase,
        output_urls=output_urls,
        output_data=output_data,
        error=str(error) if error else None,
        data_removed=bool(data.get("data_removed", False)),
        completed_at=data.get("completed_at"),
        usage=usage_of(data),
    )


# The accounting of a Prediction or Training: `metrics` seconds; `predict_time` is what
# Replicate bills (at the model's hardware price), `total_time` includes the queue.
USAGE_FIELDS = ("predict_time", "total_time")


def usage_of(data: Mapping[str, Any]) -> dict[str, Any]:
    metrics = data.get("metrics")
    if not isinstance(metrics, Mapping):
        return {}
    return {k: metrics[k] for k in USAGE_FIELDS if quantity(metrics, k) is not None}


def job_cost(settings: Settings, model: str, usage: Mapping[str, Any]) -> JobCost | None:
    """`metrics.predict_time` seconds times the model's hardware price (PROVIDER_PRICES)."""
    return priced(settings, NAME, model, usage, "predict_time", "replicate:metrics.predict_time")


def job_id_in(webhook_url: Any) -> str | None:
    """Our job id as the webhook URL we gave the provider carries it (`?job_id=…`), or None."""
    if not isinstance(webhook_url, str) or not webhook_url:
        return None
    values = parse_qs(urlsplit(webhook_url).query).get("job_id")
    return values[0] if values and len(values) == 1 else None


def _created_at(data: Mapping[str, Any]) -> datetime | None:
    value = data.get("created_at")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class ReplicateProvider:
    name = NAME
    lookup = True  # predictions and trainings are listed

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_token: str,
        webhook_events: Sequence[str] | None = None,
    ) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_token}"}
        # The events asked for (REPLICATE_WEBHOOK_EVENTS); None: the request's own.
        self._webhook_events = list(webhook_events) if webhook_events is not None else None

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        gate: SendGate | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = await self._http.request(
            method,
            f"{self._base}{path}",
            json=body,
            headers=self._headers | headers if headers else self._headers,
            extensions=gate_extensions(gate),
        )
        return raise_for_status(response)

    async def submit(
        self, request: SubmitRequest, *, gate: SendGate | None = None
    ) -> ProviderSnapshot:
        body: dict[str, Any] = {"input": dict(request.input)}
        if request.webhook_url:
            body["webhook"] = request.webhook_url
            events = self._webhook_events
            body["webhook_events_filter"] = list(
                request.webhook_events if events is None else events
            )
        model = request.model
        if request.kind == JobKind.TRAINING:
            match = _MODEL_VERSION.match(model)
            if not match:
                raise ProviderRejected(f"training needs 'owner/name:version', got {model!r}")
            owner, name, version = match.groups()
            destination = body["input"].pop("destination", None)
            if not destination:
                raise ProviderRejected("training input needs 'destination' as 'owner/model'")
            body["destination"] = destination
            path = f"/v1/models/{_segment(owner)}/{_segment(name)}/versions/{version}/trainings"
        elif _VERSION_ID.match(model) or _MODEL_VERSION.match(model):
            body["version"] = model
            path = "/v1/predictions"
        elif (official := _MODEL.match(model)) is not None:
            owner, name = official.groups()
            path = f"/v1/models/{_segment(owner)}/{_segment(name)}/predictions"
        else:
            raise ProviderRejected(
                f"model {model!r} is not 'owner/name', 'owner/name:version' or a version id"
            )
        extra = None
        if request.cancel_after_seconds:
            # The job's deadline, enforced by Replicate too (aborted before it starts, canceled
            # while running), in case our own cancel never gets there.
            extra = {"Cancel-After": f"{max(1, math.ceil(request.cancel_after_seconds))}s"}
        return snapshot_from(await self._call("POST", path, body, gate, extra), request.kind)

    async def find(
        self, request: SubmitRequest, *, since: datetime | None = None
    ) -> list[ProviderSnapshot]:
        """Predictions (trainings) of this account made for our job, oldest first.

        Replicate has no idempotency key, so a create whose answer was lost is found again by
        the webhook URL it was given, which carries our job id. The list is read newest first
        for at most FIND_MAX_PAGES pages, and no further back than `since` (less a margin for
        the two clocks). The list does not document a `webhook` field: an item without one is
        read again with a GET, which has it.
        """
        job_id = job_id_in(request.webhook_url)
        if job_id is None:
            return []  # nothing of ours to recognise it by
        collection = "trainings" if request.kind == JobKind.TRAINING else "predictions"
        cutoff = None
        if since is not None:
            since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
            cutoff = since - FIND_CLOCK_MARGIN
        url: str | None = f"{self._base}/v1/{collection}"
        found: list[ProviderSnapshot] = []
        for _ in range(FIND_MAX_PAGES):
            if url is None:
                break
            page = raise_for_status(await self._http.get(url, headers=self._headers))
            results = page.get("results") if isinstance(page, dict) else None
            if not isinstance(results, list):
                raise ProviderUnavailable(f"Replicate {collection} list without results")
            too_old = False
            for item in results:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    continue
                created = _created_at(item)
                if cutoff is not None and created is not None and created < cutoff:
                    too_old = True
                    break
                if "webhook" not in item:
                    item = await self._call("GET", f"/v1/{collection}/{_segment(item['id'])}")
                if job_id_in(item.get("webhook")) == job_id:
                    found.append(snapshot_from(item, request.kind))
            url = None if too_old else self._next_page(page.get("next"))
        found.reverse()
        return found

    async def get_many(
        self, refs: Sequence[ProviderRef], *, since: datetime | None, max_pages: int
    ) -> BulkAnswer:
        """The jobs of `refs` as the account's lists show them (newest first, 100 a page).

        Pages are read until every job was seen, the list reaches `since` (less the clock
        margin) or `max_pages` pages were read. A terminal item without its `output` (the list
        is not documented to carry it) is read again with a GET: a success must name its files.
        """
        answer = BulkAnswer()
        cutoff = None
        if since is not None:
            since = since if since.tzinfo is not None else since.replace(tzinfo=UTC)
            cutoff = since - FIND_CLOCK_MARGIN
        by_collection: dict[str, dict[str, ProviderRef]] = {}
        for ref in refs:
            collection = "trainings" if ref.kind == JobKind.TRAINING else "predictions"
            by_collection.setdefault(collection, {})[ref.provider_job_id] = ref
        for collection, wanted in by_collection.items():
            url: str | None = f"{self._base}/v1/{collection}"
            pages = 0
            while url is not None and pages < max_pages and len(wanted) > 0:
                pages += 1
                answer.calls += 1
                page = raise_for_status(await self._http.get(url, headers=self._headers))
                results = page.get("results") if isinstance(page, dict) else None
                if not isinstance(results, list):
                    raise ProviderUnavailable(f"Replicate {collection} list without results")
                too_old = False
                for item in results:
                    if not isinstance(item, dict):
                        continue
                    mine = wanted.pop(str(item.get("id")), None) if "id" in item else None
                    if mine is None:
                        created = _created_at(item)
                        too_old = too_old or (
                            cutoff is not None and created is not None and created < cutoff
                        )
                        continue
                    if PHASES.get(str(item.get("status"))) in _ENDED and "output" not in item:
                        answer.calls += 1
                        item = await self._call("GET", self._path(mine))
                    answer.found[mine.provider_job_id] = snapshot_from(item, mine.kind)
                url = None if too_old else self._next_page(page.get("next"))
        return answer

    def _next_page(self, value: Any) -> str | None:
        """The list's `next` cursor URL, only if it is on our base URL (it gets our token)."""
        if not isinstance(value, str) or not value:
            return None
        if not value.startswith(f"{self._base}/"):
            raise ProviderUnavailable(f"Replicate list cursor leaves {self._base}: {value[:200]}")
        return value

    def _path(self, ref: ProviderRef) -> str:
        collection = "trainings" if ref.kind == JobKind.TRAINING else "predictions"
        return f"/v1/{collection}/{_segment(ref.provider_job_id)}"

    async def get(self, ref: ProviderRef) -> ProviderSnapshot:
        return snapshot_from(await self._call("GET", self._path(ref)), ref.kind)

    async def cancel(self, ref: ProviderRef) -> ProviderSnapshot:
        return snapshot_from(await self._call("POST", self._path(ref) + "/cancel"), ref.kind)

    async def webhook_secret(self) -> str:
        body = await self._call("GET", "/v1/webhooks/default/secret")
        return str(body["key"])


class ReplicateWebhooks:
    """Verifies Replicate's Standard Webhooks signatures; the secret may be fetched lazily."""

    def __init__(
        self, secret: str | None, *, tolerance_seconds: int, fetch_secret: Any = None
    ) -> None:
        self._secret = secret or None
        self._tolerance = tolerance_seconds
        self._fetch_secret = fetch_secret

    async def _get_secret(self) -> str:
        if self._secret is None:
            if self._fetch_secret is None:
                raise WebhookRejected("no Replicate webhook secret configured")
            self._secret = str(await self._fetch_secret())
        return self._secret

    async def verify(self, headers: Mapping[str, str], body: bytes) -> str | None:
        return standard_webhooks.verify(
            await self._get_secret(), headers, body, tolerance_seconds=self._tolerance
        )

    def parse(self, body: bytes) -> ProviderSnapshot:
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise WebhookRejected("body is not JSON") from exc
        if not isinstance(data, dict):
            raise WebhookRejected("body is not a JSON object")
        return snapshot_from(data, JobKind.TRAINING if "destination" in data else None)


# --- the spec -------------------------------------------------------------------------------

DEFAULT_MODELS = {
    JobKind.GENERATION: "black-forest-labs/flux-schnell",
    JobKind.EDIT: "black-forest-labs/flux-kontext-pro",
    JobKind.UPSCALE: "nightmareai/real-esrgan:f121d640bd286e1fdc67f9799164c1d5be36ff74576ee11c803ae5b665dd46aa",
    JobKind.VIDEO: "minimax/video-01",
    JobKind.TRAINING: "ostris/flux-dev-lora-trainer:e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497",
}


def _client(config: ReplicateSettings, _: Settings, http: httpx.AsyncClient) -> ReplicateProvider:
    return ReplicateProvider(
        http,
        base_url=config.base_url,
        api_token=config.api_token,
        webhook_events=config.webhook_events,
    )


def _verifier(
    config: ReplicateSettings, settings: Settings, http: httpx.AsyncClient
) -> ReplicateWebhooks:
    return ReplicateWebhooks(
        config.webhook_secret,
        tolerance_seconds=settings.webhook_tolerance_seconds,
        fetch_secret=_client(config, settings, http).webhook_secret,
    )


def _caller_error(
    config: ReplicateSettings, caller: CallerCheck, kind: JobKind, payload: Mapping[str, Any]
) -> tuple[str, str] | None:
    if kind != JobKind.TRAINING:
        return None
    problem = destination_error(
        str(payload.get("destination", "")),
        owner=config.training_owner,
        user_id=caller.user_id,
        is_admin=caller.is_admin,
    )
    return ("input.destination", problem) if problem is not None else None


# The emulator (emulators/replicate) as devstack runs it, and what it shares with the stack.
EMULATOR_TOKEN = "emulator-token"
EMULATOR_WEBHOOK_SECRET = "whsec_YXV0b3N5bmMtZGV2LXdlYmhvb2stc2VjcmV0LTMyYnk="
EMULATOR_TRAINING_OWNER = "autosync"


SPEC = ProviderSpec(
    name=NAME,
    label="Replicate",
    settings=ReplicateSettings,
    key="api_token",
    default_models=DEFAULT_MODELS,
    phases=PHASES,
    client=_client,
    verifier=_verifier,
    input_error=input_error,
    model_error=model_reference_error,
    caller_error=_caller_error,
    cost=job_cost,
    emulator=EmulatorSpec(
        module="emulators.replicate",
        port=8100,
        port_var="EMULATOR_PORT",
        settings=lambda url: {
            "base_url": url,
            "api_token": EMULATOR_TOKEN,
            "webhook_secret": EMULATOR_WEBHOOK_SECRET,
            # Trainings push into models of this (emulated) account only.
            "training_owner": EMULATOR_TRAINING_OWNER,
        },
        own=lambda data_dir: {
            "webhook_secret": EMULATOR_WEBHOOK_SECRET,
            "api_token": EMULATOR_TOKEN,
            "state_file": str(data_dir / "emulator-state.json"),
        },
        user_first=("training_owner",),
    ),
)
