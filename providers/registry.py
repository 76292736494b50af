"""Providers by name. Adding a provider: one module beside this one and one entry below."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from core.contracts import JobKind
from core.settings import Settings
from providers import fal, kie, replicate
from providers.base import Provider, WebhookVerifier
from providers.fal import FalProvider, FalWebhooks
from providers.inputs import input_limits_error
from providers.kie import KieProvider, KieWebhooks
from providers.replicate import ReplicateProvider, ReplicateWebhooks

PROVIDER_NAMES = ("replicate", "fal", "kie")

# API-edge checks of each provider: (model, kind) -> problem, (kind, input) -> problem.
_MODEL_CHECKS: dict[str, Callable[[str, JobKind], str | None]] = {
    "replicate": replicate.model_reference_error,
    "fal": fal.model_reference_error,
    "kie": kie.model_reference_error,
}
_INPUT_CHECKS: dict[str, Callable[[JobKind, Mapping[str, Any]], str | None]] = {
    "replicate": replicate.input_error,
    "fal": fal.input_error,
    "kie": kie.input_error,
}


def _unknown(name: str) -> KeyError:
    return KeyError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")


def job_request_error(
    provider: str, kind: JobKind, model: str | None, payload: Mapping[str, Any]
) -> str | None:
    """Why `provider` can't run this job (`model` None: it has no default for `kind`), or None."""
    if provider not in PROVIDER_NAMES:
        return f"provider {provider!r} is not supported; use one of: {', '.join(PROVIDER_NAMES)}"
    problem = input_limits_error(payload) or _INPUT_CHECKS[provider](kind, payload)
    if problem is None and model is None:
        return f"{provider} has no default model for {kind.value} jobs; name one in 'model'"
    return problem or _MODEL_CHECKS[provider](model or "", kind)


def model_error(provider: str, model: str, kind: JobKind) -> str | None:
    """Why `provider` can't run `model` for `kind` (a known provider), or None."""
    return _MODEL_CHECKS[provider](model, kind)


def build_provider(name: str, settings: Settings, http: httpx.AsyncClient) -> Provider:
    if name == "replicate":
        return ReplicateProvider(
            http, base_url=settings.replicate_base_url, api_token=settings.replicate_api_token
        )
    if name == "fal":
        return FalProvider(http, base_url=settings.fal_base_url, api_key=settings.fal_api_key)
    if name == "kie":
        return KieProvider(http, base_url=settings.kie_base_url, api_key=settings.kie_api_key)
    raise _unknown(name)


def build_webhook_verifier(
    name: str, settings: Settings, http: httpx.AsyncClient
) -> WebhookVerifier:
    if name == "replicate":
        client = ReplicateProvider(
            http, base_url=settings.replicate_base_url, api_token=settings.replicate_api_token
        )
        return ReplicateWebhooks(
            settings.replicate_webhook_secret,
            tolerance_seconds=settings.webhook_tolerance_seconds,
            fetch_secret=client.webhook_secret,
        )
    if name == "fal":
        return FalWebhooks(
            http,
            jwks_url=settings.fal_jwks_url,
            tolerance_seconds=settings.webhook_tolerance_seconds,
            jwks_ttl_seconds=settings.fal_jwks_ttl_seconds,
            user_id=settings.fal_user_id or None,
        )
    if name == "kie":
        # Unsigned callbacks only when allowed explicitly: each one costs a recordInfo call.
        return KieWebhooks(
            http,
            base_url=settings.kie_base_url,
            api_key=settings.kie_api_key,
            hmac_key=settings.kie_webhook_hmac_key or None,
            allow_unsigned=settings.kie_allow_unsigned_callbacks,
            tolerance_seconds=settings.webhook_tolerance_seconds,
        )
    raise _unknown(name)
