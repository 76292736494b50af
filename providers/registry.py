"""Providers by name: every module of this package that exports a `SPEC`, plus the modules
named in PROVIDER_MODULES (loaded by the API and the worker at start: `configure`).

Adding a provider is one module beside this one (CONTRIBUTING.md); nothing here names one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

import providers
from core.contracts import JobKind, ProviderPhase
from core.settings import Settings
from core.usage.costs import JobCost
from providers.base import Provider, WebhookVerifier
from providers.inputs import input_limits_error
from providers.spec import ProviderSpec

_SPECS: dict[str, ProviderSpec[Any]] = {}
# Modules whose spec is in: this package's name once its own modules are, then each extra one.
_LOADED: set[str] = set()


def _register(spec: Any, module: str) -> None:
    if not isinstance(spec, ProviderSpec):
        raise TypeError(f"{module}.SPEC is not a ProviderSpec")
    known = _SPECS.get(spec.name)
    if known is not None and known is not spec:
        raise ValueError(f"provider {spec.name!r} is declared twice (again in {module})")
    _SPECS[spec.name] = spec


def _built_in() -> None:
    """The specs of this package's modules, in the order of their names."""
    if _LOADED:
        return
    _LOADED.add(providers.__name__)
    for info in sorted(pkgutil.iter_modules(providers.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{providers.__name__}.{info.name}")
        if hasattr(module, "SPEC"):
            _register(module.SPEC, module.__name__)


def load(modules: Iterable[str]) -> None:
    """Add the spec of each module (`acme.providers.magic`); loading one twice is
    harmless. A module without a `SPEC` is an error: it was named to declare one."""
    _built_in()
    for name in modules:
        if name in _LOADED:
            continue
        module = importlib.import_module(name)
        if not hasattr(module, "SPEC"):
            raise ValueError(f"PROVIDER_MODULES: {name} has no SPEC")
        _register(module.SPEC, name)
        _LOADED.add(name)


def configure(settings: Settings) -> None:
    """Load PROVIDER_MODULES and check DEFAULT_PROVIDER names a provider (the API and the
    worker call it at start, so a typo stops them with the reason)."""
    load(settings.provider_modules)
    if settings.default_provider not in _SPECS:
        raise ValueError(f"DEFAULT_PROVIDER must be one of: {', '.join(names())}")


def specs() -> dict[str, ProviderSpec[Any]]:
    _built_in()
    return dict(_SPECS)


def names() -> tuple[str, ...]:
    return tuple(specs())


def get(name: str) -> ProviderSpec[Any]:
    found = specs().get(name)
    if found is None:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(names())}")
    return found


def unsupported(provider: str) -> str:
    return f"provider {provider!r} is not supported; use one of: {', '.join(names())}"


def default_model(provider: str, kind: JobKind) -> str | None:
    """The model of a `kind` job at `provider` that names none (None: it can't do `kind`, or
    the provider is unknown)."""
    spec = specs().get(provider)
    return spec.default_models.get(kind) if spec is not None else None


def job_request_error(
    provider: str, kind: JobKind, model: str | None, payload: Mapping[str, Any]
) -> str | None:
    """Why `provider` can't run this job (`model` None: it has no default for `kind`), or None."""
    spec = specs().get(provider)
    if spec is None:
        return unsupported(provider)
    problem = input_limits_error(payload) or spec.input_error(kind, payload)
    if problem is None and model is None:
        return f"{provider} has no default model for {kind.value} jobs; name one in 'model'"
    return problem or spec.model_error(model or "", kind)


def model_error(provider: str, model: str, kind: JobKind) -> str | None:
    """Why `provider` can't run `model` for `kind` (a known provider), or None."""
    return get(provider).model_error(model, kind)


def job_cost(
    settings: Settings, provider: str, model: str, usage: Mapping[str, Any]
) -> JobCost | None:
    """What a succeeded job of `provider` cost, from its accounting (`usage`); None if unknown
    (a provider that reports none, a model without a price, an unknown provider)."""
    spec = specs().get(provider)
    if spec is None or spec.cost is None:
        return None
    return spec.cost(settings, model, usage)


def build_provider(name: str, settings: Settings, http: httpx.AsyncClient) -> Provider:
    return get(name).build_client(settings, http)


def build_webhook_verifier(
    name: str, settings: Settings, http: httpx.AsyncClient
) -> WebhookVerifier:
    return get(name).build_verifier(settings, http)


def build_providers(settings: Settings, http: httpx.AsyncClient) -> dict[str, Provider]:
    return {name: spec.build_client(settings, http) for name, spec in specs().items()}


def build_webhook_verifiers(
    settings: Settings, http: httpx.AsyncClient
) -> dict[str, WebhookVerifier]:
    return {name: spec.build_verifier(settings, http) for name, spec in specs().items()}


def statuses_of(phase: ProviderPhase) -> dict[str, list[str]]:
    """Per provider, the raw statuses that mean `phase` (for job rows without a phase)."""
    return {name: spec.statuses_of(phase) for name, spec in specs().items()}
