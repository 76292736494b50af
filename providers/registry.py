"""Providers by name. Adding a provider: one module beside this one and one entry below."""

from __future__ import annotations

import httpx

from core.settings import Settings
from providers.base import Provider, WebhookVerifier
from providers.replicate import ReplicateProvider, ReplicateWebhooks

PROVIDER_NAMES = ("replicate",)


def build_provider(name: str, settings: Settings, http: httpx.AsyncClient) -> Provider:
    if name == "replicate":
        return ReplicateProvider(
            http, base_url=settings.replicate_base_url, api_token=settings.replicate_api_token
        )
    raise KeyError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")


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
    raise KeyError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")
