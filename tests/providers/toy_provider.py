"""Toy: a provider that exists only in the tests, declared the way any provider is (one module,
one `SPEC`) and loaded with PROVIDER_MODULES=tests.providers.toy_provider. Nothing outside
tests/ knows it: tests/e2e/test_toy_provider.py runs a job through it end to end.

Its protocol (spoken by tests/providers/toy_emulator.py) is its own, unlike the real ones:
- `POST /paintings` with `X-Toy-Key` and `{"style", "prompt", "callback"}` answers
  `{"painting": {"ref", "stage", "frames", "why"}}`; `GET /paintings/{ref}` reads one;
  `DELETE /paintings/{ref}` abandons it.
- Stages: `easel`, `brushing`, then `framed` (its `frames` are file URLs), `torn` (`why`) or
  `abandoned`.
- The callback is the painting as JSON, sealed with `X-Toy-Seal: hex(HMAC-SHA256(webhook key,
  body))`; `X-Toy-Delivery` names the delivery (a redelivery keeps it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
from pydantic_settings import SettingsConfigDict

from core.contracts import JobKind, ProviderPhase, ProviderRef, ProviderSnapshot, SubmitRequest
from core.settings import ProviderSettings, Settings
from providers.base import (
    ProviderUnavailable,
    SendGate,
    WebhookRejected,
    gate_extensions,
)
from providers.http_errors import raise_for_status
from providers.inputs import missing_input
from providers.spec import ProviderSpec

NAME = "toy"
SEAL_HEADER = "x-toy-seal"
DELIVERY_HEADER = "x-toy-delivery"

PHASES: dict[str, ProviderPhase] = {
    "easel": ProviderPhase.QUEUED,
    "brushing": ProviderPhase.RUNNING,
    "framed": ProviderPhase.SUCCEEDED,
    "torn": ProviderPhase.FAILED,
    "abandoned": ProviderPhase.CANCELED,
}
_STYLE = re.compile(r"^toy/[a-z-]{1,40}$")


class ToySettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="TOY_")

    api_key: str = ""
    base_url: str = "http://toy.invalid"
    webhook_key: str = ""


def seal(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def input_error(kind: JobKind, payload: Mapping[str, Any]) -> str | None:
    if kind != JobKind.GENERATION:
        return f"the toy only paints: no {kind.value} jobs"
    return missing_input(kind, payload, {JobKind.GENERATION: [("prompt",)]})


def model_error(model: str, kind: JobKind) -> str | None:
    return None if _STYLE.match(model) else "model must be a style such as 'toy/watercolour'"


def snapshot_of(data: Any) -> ProviderSnapshot:
    painting = data.get("painting") if isinstance(data, dict) else None
    if not isinstance(painting, dict) or not isinstance(painting.get("ref"), str):
        raise ProviderUnavailable("toy answer without a painting")
    stage = str(painting.get("stage"))
    frames = painting.get("frames") or []
    return ProviderSnapshot(
        provider_job_id=painting["ref"],
        provider_status=stage,
        phase=PHASES.get(stage, ProviderPhase.RUNNING),
        output_urls=[url for url in frames if isinstance(url, str)],
        error=str(painting["why"]) if painting.get("why") else None,
    )


class ToyProvider:
    name = NAME
    lookup = False  # the toy lists no paintings

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, api_key: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._headers = {"X-Toy-Key": api_key}

    async def submit(
        self, request: SubmitRequest, *, gate: SendGate | None = None
    ) -> ProviderSnapshot:
        body = {
            "style": request.model,
            "prompt": request.input.get("prompt"),
            "callback": request.webhook_url,
        }
        response = await self._http.post(
            f"{self._base}/paintings",
            json=body,
            headers=self._headers,
            extensions=gate_extensions(gate),
        )
        return snapshot_of(raise_for_status(response))

    async def find(
        self, request: SubmitRequest, *, since: datetime | None = None
    ) -> list[ProviderSnapshot]:
        return []

    def _url(self, ref: ProviderRef) -> str:
        return f"{self._base}/paintings/{quote(ref.provider_job_id, safe='')}"

    async def get(self, ref: ProviderRef) -> ProviderSnapshot:
        response = await self._http.get(self._url(ref), headers=self._headers)
        return snapshot_of(raise_for_status(response))

    async def cancel(self, ref: ProviderRef) -> ProviderSnapshot:
        response = await self._http.delete(self._url(ref), headers=self._headers)
        return snapshot_of(raise_for_status(response))


class ToyWebhooks:
    def __init__(self, key: str) -> None:
        self._key = key

    async def verify(self, headers: Mapping[str, str], body: bytes) -> str | None:
        lowered = {k.lower(): v for k, v in headers.items()}
        if not self._key:
            raise WebhookRejected("TOY_WEBHOOK_KEY is not set")
        if not hmac.compare_digest(lowered.get(SEAL_HEADER, ""), seal(self._key, body)):
            raise WebhookRejected("the toy's seal does not match")
        return lowered.get(DELIVERY_HEADER)

    def parse(self, body: bytes) -> ProviderSnapshot:
        try:
            return snapshot_of(json.loads(body))
        except (ValueError, ProviderUnavailable) as exc:
            raise WebhookRejected(f"not a toy callback: {exc}") from exc


def _client(config: ToySettings, _: Settings, http: httpx.AsyncClient) -> ToyProvider:
    return ToyProvider(http, base_url=config.base_url, api_key=config.api_key)


def _verifier(config: ToySettings, _: Settings, http: httpx.AsyncClient) -> ToyWebhooks:
    return ToyWebhooks(config.webhook_key)


SPEC = ProviderSpec(
    name=NAME,
    label="Toy",
    settings=ToySettings,
    key="api_key",
    default_models={JobKind.GENERATION: "toy/watercolour"},
    phases=PHASES,
    client=_client,
    verifier=_verifier,
    input_error=input_error,
    model_error=model_error,
)
