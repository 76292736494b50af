"""What a provider is: one module exporting one `SPEC`, found by `providers.registry`.

A spec holds everything the rest of the system needs to know about a provider, so nothing
outside its module names it: its settings (a `ProviderSettings` with its own env prefix),
its default model per kind, the checks of a job's input and model at the API edge, how to
build its client and its webhook verifier, what each of its raw statuses means as a
`ProviderPhase`, how its accounting prices a job, and how devstack runs its emulator. CONTRIBUTING.md "Adding a provider".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from core.contracts import JobKind, ProviderPhase
from core.settings import ProviderSettings, Settings
from core.usage.costs import JobCost
from providers.base import Provider, WebhookVerifier

S = TypeVar("S", bound=ProviderSettings)


def _nothing(data_dir: Path) -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class EmulatorSpec:
    """How devstack runs the provider's emulator and points the API and the worker at it.

    The emulator is `python -m {module} --host … --port …`, its settings `{NAME}_EMULATOR_*`
    (`own`, plus `public_url`: where it serves its output files).
    """

    module: str
    # The port `make up` gives it, and the variable that moves it.
    port: int
    port_var: str
    # The provider's settings (field → value) that point the API and the worker at the
    # emulator listening at `url`.
    settings: Callable[[str], Mapping[str, str]]
    # The emulator's own settings (field → value: the keys and secrets it shares with
    # `settings`), given the stack's data dir.
    own: Callable[[Path], Mapping[str, str]] = _nothing
    # Fields of `settings` a user's own value replaces (the rest is wiring to the emulator).
    user_first: tuple[str, ...] = ()


@dataclass(frozen=True)
class CallerCheck:
    """Who asks for a job, for checks of its input that depend on it."""

    user_id: str
    is_admin: bool


@dataclass(frozen=True)
class ProviderSpec(Generic[S]):
    name: str  # in URLs (`/webhooks/{name}`), job rows and workflow ids: never renamed
    label: str  # for people: "fal.ai"
    settings: type[S]
    # The settings field holding the account's key: set, it is the real provider (devstack
    # starts no emulator for it).
    key: str
    # The model a job runs when it names none. A kind missing here is one the provider can't
    # do: such jobs are refused at the API.
    default_models: Mapping[JobKind, str]
    # What each raw status the provider reports (`jobs.provider_status`) means. The job row
    # stores the phase itself (`jobs.provider_phase`); this reads rows from before it. A
    # status that can end several ways maps to the phase whose rows deserve a second look
    # (the recovery sweep asks the provider again before it acts).
    phases: Mapping[str, ProviderPhase]
    client: Callable[[S, Settings, httpx.AsyncClient], Provider]
    verifier: Callable[[S, Settings, httpx.AsyncClient], WebhookVerifier]
    # What the input lacks for a kind (None: nothing), and why a model can't run a kind.
    input_error: Callable[[JobKind, Mapping[str, Any]], str | None]
    model_error: Callable[[str, JobKind], str | None]
    # Checks that depend on who asks and on the provider's settings: (field, problem) or None.
    caller_error: (
        Callable[[S, CallerCheck, JobKind, Mapping[str, Any]], tuple[str, str] | None] | None
    ) = None
    emulator: EmulatorSpec | None = None
    # What a succeeded job cost, from its snapshot's `usage` (the provider's own accounting)
    # and PROVIDER_PRICES: (settings, model, usage) -> JobCost, or None when unknown.
    cost: Callable[[Settings, str, Mapping[str, Any]], JobCost | None] | None = None

    def config(self, settings: Settings) -> S:
        """This provider's settings, read alongside `settings`."""
        return settings.provider(self.settings)

    def build_client(self, settings: Settings, http: httpx.AsyncClient) -> Provider:
        return self.client(self.config(settings), settings, http)

    def build_verifier(self, settings: Settings, http: httpx.AsyncClient) -> WebhookVerifier:
        return self.verifier(self.config(settings), settings, http)

    def env_names(self) -> list[str]:
        """Every variable the provider's settings read."""
        return self.settings.env_names()

    @property
    def key_env(self) -> str:
        return self.settings.env_name(self.key)

    def emulator_app_env(self, url: str) -> dict[str, str]:
        """The variables that point the API and the worker at this provider's emulator."""
        assert self.emulator is not None
        wiring = self.emulator.settings(url)
        return {self.settings.env_name(field): value for field, value in wiring.items()}

    def emulator_env(self, url: str, data_dir: Path) -> dict[str, str]:
        """The emulator's own variables (`{NAME}_EMULATOR_*`)."""
        assert self.emulator is not None
        own = {**self.emulator.own(data_dir), "public_url": url}
        return {f"{self.emulator_prefix}{field.upper()}": value for field, value in own.items()}

    @property
    def emulator_prefix(self) -> str:
        return f"{self.name.upper()}_EMULATOR_"

    def user_first_env(self) -> list[str]:
        """Variables of the emulator's wiring a user's own value replaces."""
        fields = self.emulator.user_first if self.emulator else ()
        return [self.settings.env_name(field) for field in fields]

    def statuses_of(self, phase: ProviderPhase) -> list[str]:
        """The raw statuses that mean `phase`."""
        return [status for status, meant in self.phases.items() if meant == phase]
