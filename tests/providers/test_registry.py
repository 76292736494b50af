"""The provider registry: every provider is one module exporting one spec, found without a
list of names, built from its own settings and checked the same way at the API edge."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from core.contracts import TERMINAL_PHASES, JobKind, ProviderPhase
from core.settings import Settings
from providers import registry
from providers.base import WebhookRejected
from providers.fal import FalProvider, FalWebhooks
from providers.kie import KieProvider, KieWebhooks
from providers.replicate import ReplicateProvider, ReplicateWebhooks
from providers.spec import ProviderSpec

# An input every provider's default model of each kind accepts.
INPUTS: dict[JobKind, dict[str, Any]] = {
    JobKind.GENERATION: {"prompt": "a fox"},
    JobKind.EDIT: {"prompt": "blue", "image": "u", "image_url": "u", "image_urls": ["u"]},
    JobKind.UPSCALE: {"image": "u", "image_url": "u"},
    JobKind.VIDEO: {"prompt": "a fox running"},
    JobKind.TRAINING: {"destination": "me/lora", "images_data_url": "u"},
}
BUILT_IN = ("fal", "kie", "replicate")


def settings_of(**values: Any) -> Settings:
    """Settings from these values and the defaults only (no `.env`)."""
    return Settings(**{"_env_file": None, "secret_key": "test-secret-key-0123456789", **values})


def test_the_built_in_providers_are_found_in_the_package() -> None:
    assert set(BUILT_IN) <= set(registry.names())
    for name, spec in registry.specs().items():
        assert spec.name == name and re.fullmatch(r"[a-z][a-z0-9_]*", name)


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_spec_keeps_its_settings_under_its_own_prefix(name: str) -> None:
    spec = registry.get(name)
    assert spec.settings.env_prefix() == f"{name.upper()}_"
    assert all(env.startswith(f"{name.upper()}_") for env in spec.env_names())
    assert spec.key_env in spec.env_names()
    assert spec.settings.env_name("base_url") in spec.env_names()


@pytest.mark.parametrize("name", BUILT_IN)
def test_a_spec_says_what_its_statuses_mean(name: str) -> None:
    spec = registry.get(name)
    # The success status is the one the recovery sweep looks for on rows without a phase.
    assert spec.statuses_of(ProviderPhase.SUCCEEDED)
    assert set(spec.phases.values()) >= {ProviderPhase.QUEUED, ProviderPhase.RUNNING}
    assert set(spec.phases.values()) & (TERMINAL_PHASES - {ProviderPhase.SUCCEEDED})
    assert registry.statuses_of(ProviderPhase.SUCCEEDED)[name] == spec.statuses_of(
        ProviderPhase.SUCCEEDED
    )


def test_every_provider_has_a_default_model_per_kind_that_passes_its_own_checks() -> None:
    for provider in BUILT_IN:
        for kind in JobKind:
            model = registry.default_model(provider, kind)
            problem = registry.job_request_error(provider, kind, model, INPUTS[kind])
            if (provider, kind) == ("kie", JobKind.TRAINING):
                assert model is None and problem == "KIE has no training API"
            else:
                assert model is not None and problem is None, (provider, kind, problem)


@pytest.mark.parametrize(
    ("provider", "kind", "model", "payload", "hint"),
    [
        ("acme", JobKind.GENERATION, "x/y", {"prompt": "x"}, "fal, kie, replicate"),
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
    problem = registry.job_request_error(provider, kind, model, payload)
    assert problem is not None and hint in problem


def test_default_provider_must_be_known() -> None:
    registry.configure(settings_of())
    registry.configure(settings_of(default_provider="kie"))
    with pytest.raises(ValueError, match="DEFAULT_PROVIDER must be one of: fal, kie, replicate"):
        registry.configure(settings_of(default_provider="acme"))


def test_an_extra_module_must_declare_a_spec() -> None:
    with pytest.raises(ValueError, match=r"core\.contracts has no SPEC"):
        registry.load(["core.contracts"])
    with pytest.raises(ModuleNotFoundError):
        registry.load(["tests.providers.no_such_provider"])


async def test_each_provider_and_verifier_is_built_from_its_own_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAL_BASE_URL", "http://fal.test")
    monkeypatch.setenv("KIE_BASE_URL", "http://kie.test")
    monkeypatch.setenv("KIE_WEBHOOK_HMAC_KEY", "k")
    monkeypatch.setenv("REPLICATE_WEBHOOK_EVENTS", "start, completed")
    settings = settings_of()
    async with httpx.AsyncClient() as http:
        providers = registry.build_providers(settings, http)
        verifiers = registry.build_webhook_verifiers(settings, http)
        with pytest.raises(KeyError, match="known: fal, kie, replicate"):
            registry.build_provider("acme", settings, http)
    assert isinstance(providers["replicate"], ReplicateProvider)
    assert isinstance(providers["fal"], FalProvider)
    assert isinstance(providers["kie"], KieProvider)
    assert isinstance(verifiers["replicate"], ReplicateWebhooks)
    assert isinstance(verifiers["fal"], FalWebhooks)
    assert isinstance(verifiers["kie"], KieWebhooks)
    assert [p.name for p in providers.values()] == list(registry.names())
    assert registry.get("fal").config(settings).base_url == "http://fal.test"
    assert registry.get("replicate").config(settings).webhook_events == ["start", "completed"]
    # Read once, then kept with these settings: a later change of the environment is not seen.
    monkeypatch.setenv("FAL_BASE_URL", "http://elsewhere.test")
    assert registry.get("fal").config(settings).base_url == "http://fal.test"
    assert registry.get("fal").config(settings_of()).base_url == "http://elsewhere.test"


@pytest.mark.parametrize("allowed", [False, True])
async def test_kie_unsigned_callbacks_follow_the_setting(
    allowed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KIE_ALLOW_UNSIGNED_CALLBACKS", str(allowed).lower())
    async with httpx.AsyncClient() as http:
        kie = registry.build_webhook_verifier("kie", settings_of(), http)
    assert isinstance(kie, KieWebhooks)
    if allowed:
        assert kie.check_signature({}, "task_1") is None
    else:
        with pytest.raises(WebhookRejected, match="unsigned"):
            kie.check_signature({}, "task_1")


def test_a_spec_is_frozen() -> None:
    spec: ProviderSpec[Any] = registry.get("replicate")
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
