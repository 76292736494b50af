"""docker-compose.yml read the way `docker compose` reads it: YAML, then ${VAR} interpolation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
APP_ENV_EXAMPLE = ROOT / ".env.example"

# $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})"
)


class MissingVariableError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def variables() -> list[tuple[str, str | None, str | None]]:
    """Every (name, operator, argument) the file interpolates."""
    return [
        (m["name"] or m["plain"], m["op"], m["arg"])
        for m in _VARIABLE.finditer(COMPOSE.read_text())
        if not m["escaped"]
    ]


def required_variables() -> set[str]:
    return {name for name, op, _ in variables() if op in (":?", "?")}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["name"] or m["plain"]
        op, arg = m["op"], m["arg"] or ""
        current = env.get(name)
        unset_or_empty = not current if op and op.startswith(":") else current is None
        if op in (":-", "-") and unset_or_empty:
            return arg
        if op in (":?", "?") and unset_or_empty:
            raise MissingVariableError(name, arg)
        return current or ""

    return _VARIABLE.sub(substitute, value)


def example_env() -> dict[str, str]:
    """compose.env.example's values, its empty secrets filled the way its comments say."""
    env: dict[str, str] = {}
    for line in COMPOSE_ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value or f"{name.lower().replace('_', '')}0123456789abcdef"
    env["BOOTSTRAP_API_KEYS"] = "0123456789abcdef0123456789abcdef=admin:admin"
    return env


def resolved(env: dict[str, str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = interpolate(raw(), example_env() if env is None else env)
    return data


def documented_names(path: Path) -> set[str]:
    """Names in an env example, set (NAME=…) or shown commented out (# NAME=…)."""
    return set(re.findall(r"^(?:# ?)?([A-Z][A-Z0-9_]*)=", path.read_text(), re.M))
