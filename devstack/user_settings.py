"""What `make up` takes from the user: exported variables first, then `.env`, then its defaults.

The API and the worker read the same `.env` themselves (pydantic-settings, from the repository
root), and a variable devstack hands them beats that file: so devstack hands them only what the
user left unset, and says what it chose and where each value came from. A provider whose key
is set is the real one (no emulator); a real provider needs a `PUBLIC_BASE_URL` it can reach,
else its webhooks go nowhere and jobs finish by polling only, hence the warning.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from core.outbound import non_public_reason
from devstack.stack import ROOT, Stack, StackConfig, provider_emulators
from providers import registry

ENV, DOTENV, DEFAULT = "env", ".env", "default"

# The embedded stack's ERP is big enough, and polite enough (5 requests/s), that a month's
# sync takes a few seconds: long enough to watch its modules advance.
WATCHABLE_SYNC = {
    "ERP_EMULATOR_ROWS_PER_VIEW": "20000",
    "SYNC_PAGE_SIZE": "200",
    "SYNC_MIN_INTERVAL_SECONDS": "0.2",
}

# Settings the stack has a value of its own for, which the user's value replaces. Everything
# else the stack sets is wiring between the processes it runs (the dev server's address, an
# emulator's URL and keys), which no user value could make right.
USER_FIRST = (
    "PUBLIC_BASE_URL",
    "DATABASE_URL",
    "STORAGE_BACKEND",
    "STORAGE_DIR",
    "S3_BUCKET",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "BOOTSTRAP_API_KEYS",
    "SECRET_KEY",
    "TEMPORAL_UI_URL",
    "OUTBOUND_ALLOWED_ORIGINS",
    *(name for spec in provider_emulators().values() for name in spec.user_first_env()),
    "WORKER_METRICS_URLS",
    "WORKER_GRACEFUL_SHUTDOWN_SECONDS",  # devstack waits that long for a stopping worker
    *WATCHABLE_SYNC,
)


@dataclass(frozen=True)
class Provider:
    name: str
    label: str
    key_var: str  # set: the real provider, no emulator
    base_url_var: str | None  # None: its settings have no `base_url`
    base_url: str  # its default: the real provider's API


def providers() -> list[Provider]:
    """Every provider, as its spec declares it."""
    found = []
    for spec in registry.specs().values():
        has_base = "base_url" in spec.settings.model_fields
        found.append(
            Provider(
                spec.name,
                spec.label,
                spec.key_env,
                spec.settings.env_name("base_url") if has_base else None,
                str(spec.settings.default_of("base_url")) if has_base else "its default",
            )
        )
    return found


def read_dotenv(path: Path) -> dict[str, str]:
    """`path` parsed as the API and the worker parse it (python-dotenv, names case-blind)."""
    if not path.is_file():
        return {}
    return {k.upper(): v for k, v in dotenv_values(path).items() if v is not None}


@dataclass(frozen=True)
class UserSettings:
    exported: Mapping[str, str]
    dotenv: Mapping[str, str]

    @classmethod
    def load(cls, root: Path = ROOT, environ: Mapping[str, str] | None = None) -> UserSettings:
        return cls(dict(os.environ if environ is None else environ), read_dotenv(root / ".env"))

    def get(self, name: str) -> str | None:
        """The user's value (None: unset or empty, so devstack's to fill)."""
        # An exported empty value wins over `.env`, as it does for pydantic-settings.
        value = self.exported[name] if name in self.exported else self.dotenv.get(name)
        return value or None

    def source(self, name: str) -> str:
        if self.get(name) is None:
            return DEFAULT
        return ENV if name in self.exported else DOTENV

    def chosen(self, names: tuple[str, ...]) -> dict[str, str]:
        return {name: value for name in names if (value := self.get(name)) is not None}

    def real_providers(self) -> list[Provider]:
        return [p for p in providers() if self.get(p.key_var)]


def stack_config(user: UserSettings) -> StackConfig:
    """The stack `make up` runs: the user's settings where given, the embedded defaults else."""

    def port(name: str, default: int) -> int:
        return int(user.get(name) or default)

    real = {p.name for p in user.real_providers()}
    metrics = user.get("WORKER_METRICS_PORT")
    return StackConfig(
        data_dir=Path(user.get("AUTOSYNC_DATA_DIR") or ROOT / "data"),
        temporal_port=port("TEMPORAL_PORT", 7233),
        ui_port=port("TEMPORAL_UI_PORT", 8233),
        api_port=port("API_PORT", 8000),
        provider_ports={
            name: None if name in real else port(spec.emulator.port_var, spec.emulator.port)
            for name, spec in provider_emulators().items()
            if spec.emulator
        },
        erp_port=None if user.get("ERP_BASE_URL") else port("ERP_EMULATOR_PORT", 8200),
        pull_client_port=port("PULL_CLIENT_EMULATOR_PORT", 3001) or None,
        worker_metrics_port=(int(metrics) or None) if metrics else 9464,
        database_url=user.get("DATABASE_URL"),
        storage_backend=user.get("STORAGE_BACKEND") or "local",
        s3_endpoint_url=user.get("S3_ENDPOINT_URL"),
        s3_bucket=user.get("S3_BUCKET") or "autosync",
        api_keys=user.get("BOOTSTRAP_API_KEYS") or "dev-key=dev:admin",
        env={**WATCHABLE_SYNC, **user.chosen(USER_FIRST)},
    )


# --- what `make up` prints -----------------------------------------------------------------


def is_secret(name: str) -> bool:
    return any(part in name for part in ("TOKEN", "KEY", "SECRET", "PASSWORD"))


def masked(value: str) -> str:
    """Enough to tell which secret it is, not enough to use it."""
    return f"{value[:3]}… ({len(value)} chars)" if len(value) >= 12 else "***"


def shown_value(name: str, value: str) -> str:
    """`value` fit to print: secrets masked, a password in a URL hidden."""
    if is_secret(name):
        return masked(value)
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", value)  # a password in a URL


def settings_block(stack: Stack, user: UserSettings) -> str:
    """What the stack runs with, each value with where it came from."""
    env = stack.app_env()
    rows: list[tuple[str, str, str]] = []

    def row(name: str, value: str | None, source: str, note: str = "", plain: bool = False) -> None:
        shown = "(unset)" if value is None else value if plain else shown_value(name, value)
        rows.append((f"{name}={shown}", source, note))

    for name in ("PUBLIC_BASE_URL", "DATABASE_URL", "STORAGE_BACKEND"):
        row(name, env[name], user.source(name))
    if stack.config.storage_backend == "s3":
        for name in ("S3_ENDPOINT_URL", "S3_BUCKET"):
            row(name, env.get(name), user.source(name))
    for name in WATCHABLE_SYNC:
        if name.startswith("ERP_EMULATOR_") and stack.erp_url is None:
            continue
        row(name, env[name], user.source(name))
    # Absent: the stack's worker serves no metrics (the user set 0).
    row(
        "WORKER_METRICS_PORT",
        env.get("WORKER_METRICS_PORT", "0"),
        user.source("WORKER_METRICS_PORT"),
    )
    keys_source = user.source("BOOTSTRAP_API_KEYS")  # the default is the documented dev key
    row("BOOTSTRAP_API_KEYS", env["BOOTSTRAP_API_KEYS"], keys_source, plain=keys_source == DEFAULT)
    secret_source = user.source("SECRET_KEY")
    if secret_source == DEFAULT:
        secret_source = f"{DEFAULT} ({stack.data_dir / 'secret_key'})"
    row("SECRET_KEY", env["SECRET_KEY"], secret_source)
    for provider in providers():
        if (url := stack.provider_url(provider.name)) is not None:
            note = f"→ {provider.label} emulator at {url}"
            row(provider.key_var, "(the emulator's)", DEFAULT, note, plain=True)
            continue
        chosen = user.get(provider.base_url_var) if provider.base_url_var else None
        base = chosen or provider.base_url
        row(
            provider.key_var,
            user.get(provider.key_var),
            user.source(provider.key_var),
            f"→ real {provider.label} at {base}",
        )
    if stack.erp_url is not None:
        row("ERP_BASE_URL", stack.erp_url, DEFAULT, "→ ERP emulator")
    else:
        row("ERP_BASE_URL", user.get("ERP_BASE_URL"), user.source("ERP_BASE_URL"), "→ your ERP")
    row("TEMPORAL_ADDRESS", env["TEMPORAL_ADDRESS"], "devstack", "(the dev server it runs)")

    width = max(len(text) for text, _, _ in rows) + 2
    lines = [f"  {text:<{width}}{source:<10}{note}".rstrip() for text, source, note in rows]
    return "\n".join(["settings (exported env > .env > devstack default):", *lines])


def unreachable_reason(url: str) -> str | None:
    """Why a provider on the internet could not call `url` back (None: it may well)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "no host"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            return "localhost is this machine"
        if host.endswith((".local", ".lan", ".internal", ".home.arpa")):
            return f"{host} is a local network name"
        if "." not in host:
            return f"{host} is not a public DNS name"
    else:
        if reason := non_public_reason(host):
            return f"{host} {reason}"
    if parts.scheme != "https":
        return "not https"
    return None


def webhook_warning(public_base_url: str, real: list[Provider]) -> str | None:
    """One loud line when a real provider is used with a base URL it can't call back."""
    reason = unreachable_reason(public_base_url) if real else None
    if reason is None:
        return None
    names = ", ".join(p.label for p in real)
    return (
        f"WARNING: {names} can't reach PUBLIC_BASE_URL={public_base_url} ({reason}): their "
        "webhooks go nowhere and jobs finish by polling only; set PUBLIC_BASE_URL to a public "
        "https URL (a tunnel will do)."
    )
