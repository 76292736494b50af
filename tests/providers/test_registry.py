"""The provider registry: every provider is built and checked the same way at the API edge."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from core.contracts import JobKind
from core.settings import DEFAULT_MODELS, Settings
from providers.base import WebhookRejected
from providers.fal import FalProvider, FalWebhooks
from providers.kie import KieProvider, KieWebhooks
from providers.registry import (
    PROVIDER_NAMES,
    build_provider,
    build_webhook_verifier,
    job_request_error,
)
from providers.replicate import ReplicateProvider, ReplicateWebhooks

# An input every provider's default model of each kind accepts.
INPUTS: dict[JobKind, dict[str, Any]] = {
    JobKind.GENERATION: {"prompt": "a fox"},
    JobKind.EDIT: {"prompt": "blue", "image": "u", "image_url": "u", "image_urls": ["u"]},
    JobKind.UPSCALE: {"image": "u", "image_url": "u"},
    JobKind.VIDEO: {"prompt": "a fox running"},
    JobKind.TRAINING: {"destination": "me/lora", "images_data_url": "u"},
}


def settings_of(**values: Any) -> Settings:
    """Settings from these values and the defaults only (no `.env`)."""
    return Settings(**{"_env_file": None, "secret_key": "test-secret-key-0123456789", **values})


def test_every_provider_has_a_default_model_per_kind_that_passes_its_own_checks() -> None:
    settings = settings_of()
    assert set(DEFAULT_MODELS) == set(PROVIDER_NAMES)
    for provider in PROVIDER_NAMES:
        for kind in JobKind:
            model = settings.default_model(kind.value, provider)
            problem = job_request_error(provider, kind, model, INPUTS[kind])
            if (provider, kind) == ("kie", JobKind.TRAINING):
                assert model is None and problem == "KIE has no training API"
            else:
                assert model is not None and problem is None, (provider, kind, problem)


@pytest.mark.parametrize(
    ("provider", "kind", "model", "payload", "hint"),
    [
        ("acme", JobKind.GENERATION, "x/y", {"prompt": "x"}, "replicate, fal, kie"),
        ("fal", JobKind.EDIT, "fal-ai/flux-pro/kontext", {"prompt": "x"}, "input.image_url"),
        ("kie", JobKind.EDIT, "google/nano-banana-edit", {"prompt": "x", "image_urls": []},
         "input.image_urls"),
        ("kie", JobKind.UPSCALE, "topaz/image-upscale", {"image_url": "  "}, "input.image_url"),
        ("fal", JobKind.GENERATION, "flux", {"prompt": "x"}, "fal endpoint id"),
        ("replicate", JobKind.TRAINING, "o/t:" + "a" * 64, {"destination": "nope"}, "owner/model"),
        ("replicate", JobKind.GENERATION, None, {"prompt": "x"}, "no default model"),
    ],
)  # fmt: skip
def test_what_a_provider_cannot_run_is_named(
    provider: str, kind: JobKind, model: str | None, payload: dict[str, Any], hint: str
) -> None:
    problem = job_request_error(provider, kind, model, payload)
    assert problem is not None and hint in problem


def test_default_provider_must_be_known() -> None:
    assert settings_of().default_provider == "replicate"
    assert settings_of(default_provider="kie").default_provider == "kie"
    with pytest.raises(ValueError, match="DEFAULT_PROVIDER"):
        settings_of(default_provider="acme")


async def test_each_provider_and_verifier_is_built_from_its_settings() -> None:
    settings = settings_of(
        fal_base_url="http://fal.test",
        kie_base_url="http://kie.test",
        kie_webhook_hmac_key="k",
    )
    async with httpx.AsyncClient() as http:
        providers = {name: build_provider(name, settings, http) for name in PROVIDER_NAMES}
        verifiers = {name: build_webhook_verifier(name, settings, http) for name in PROVIDER_NAMES}
        with pytest.raises(KeyError, match="known: replicate, fal, kie"):
            build_provider("acme", settings, http)
    assert isinstance(providers["replicate"], ReplicateProvider)
    assert isinstance(providers["fal"], FalProvider)
    assert isinstance(providers["kie"], KieProvider)
    assert isinstance(verifiers["replicate"], ReplicateWebhooks)
    assert isinstance(verifiers["fal"], FalWebhooks)
    assert isinstance(verifiers["kie"], KieWebhooks)
    assert [p.name for p in providers.values()] == list(PROVIDER_NAMES)


@pytest.mark.parametrize("allowed", [False, True])
async def test_kie_unsigned_callbacks_follow_the_setting(allowed: bool) -> None:
    settings = settings_of(kie_allow_unsigned_callbacks=allowed)
    async with httpx.AsyncClient() as http:
        kie = build_webhook_verifier("kie", settings, http)
    assert isinstance(kie, KieWebhooks)
    if allowed:
        assert kie.check_signature({}, "task_1") is None
    else:
        with pytest.raises(WebhookRejected, match="unsigned"):
            kie.check_signature({}, "task_1")
