"""Checks on what clients send, turned into Replicate's 422 `Input validation failed` answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from emulators.replicate.models import ALL_EVENTS, Faults, InvalidField, problem

VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
MODEL_VERSION = re.compile(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+):([0-9a-f]{64})$")
FAULTS_KEY = "_emulator"
MAX_WAIT_SECONDS = 60.0

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class ValidationFailed(Exception):
    """The request can't be accepted; `body()` is what Replicate would answer with a 422."""

    def __init__(self, fields: list[InvalidField]) -> None:
        super().__init__("; ".join(f"{f.field}: {f.description}" for f in fields))
        self.fields = fields

    def body(self) -> dict[str, Any]:
        detail = "\n".join(f"- {f.field}: {f.description}" for f in self.fields)
        return problem(
            422,
            "Input validation failed",
            detail,
            invalid_fields=[f.model_dump() for f in self.fields],
        )


@dataclass(frozen=True)
class VersionRef:
    """What a `version` string names. `model` is None for a bare version id."""

    model: str | None
    version: str


@dataclass(frozen=True)
class CreateRequest:
    """A create body after validation; `input` no longer holds the `_emulator` key."""

    input: dict[str, Any]
    faults: Faults | None
    webhook: str | None
    webhook_events_filter: list[str] | None
    version: VersionRef | None
    destination: str | None


def parse_version(value: str) -> VersionRef | None:
    """`<64hex>`, `owner/name:<64hex>` or `owner/name` (official model), else None."""
    if VERSION_ID.match(value):
        return VersionRef(model=None, version=value)
    if match := MODEL_VERSION.match(value):
        return VersionRef(model=match.group(1), version=match.group(2))
    if MODEL_NAME.match(value):
        return VersionRef(model=value, version="hidden")
    return None


def parse_create(
    body: Any, *, with_version: bool = False, with_destination: bool = False
) -> CreateRequest:
    """Validate a prediction or training create body, collecting every problem at once."""
    errors: list[InvalidField] = []
    if not isinstance(body, dict):
        raise ValidationFailed(
            [InvalidField(type="type", field="body", description="Body must be a JSON object")]
        )

    raw_input = body.get("input")
    payload: dict[str, Any] = {}
    faults: Faults | None = None
    if raw_input is None:
        errors.append(InvalidField(type="required", field="input", description="input is required"))
    elif not isinstance(raw_input, dict):
        errors.append(
            InvalidField(type="type", field="input", description="Invalid type. Expected: object")
        )
    else:
        payload = dict(raw_input)
        raw_faults = payload.pop(FAULTS_KEY, None)
        if raw_faults is not None:
            try:
                faults = Faults.model_validate(raw_faults)
            except ValidationError as exc:
                for err in exc.errors():
                    location = ".".join(str(part) for part in err["loc"])
                    field = f"input.{FAULTS_KEY}" + (f".{location}" if location else "")
                    errors.append(
                        InvalidField(type=err["type"], field=field, description=err["msg"])
                    )

    version: VersionRef | None = None
    if with_version:
        raw_version = body.get("version")
        if raw_version is None:
            errors.append(
                InvalidField(type="required", field="version", description="version is required")
            )
        elif not isinstance(raw_version, str) or (version := parse_version(raw_version)) is None:
            errors.append(
                InvalidField(
                    type="format",
                    field="version",
                    description=(
                        "Invalid version: expected a 64-character hex id, "
                        "'owner/name:<id>' or 'owner/name'"
                    ),
                )
            )

    destination: str | None = None
    if with_destination:
        raw_destination = body.get("destination")
        if raw_destination is None:
            errors.append(
                InvalidField(
                    type="required", field="destination", description="destination is required"
                )
            )
        elif not isinstance(raw_destination, str) or not MODEL_NAME.match(raw_destination):
            errors.append(
                InvalidField(
                    type="format",
                    field="destination",
                    description="destination must be a model as 'owner/name'",
                )
            )
        else:
            destination = raw_destination

    webhook = body.get("webhook")
    if webhook is not None and (
        not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
    ):
        errors.append(
            InvalidField(type="format", field="webhook", description="webhook must be an HTTP URL")
        )

    events = body.get("webhook_events_filter")
    if events is not None and (
        not isinstance(events, list) or any(event not in ALL_EVENTS for event in events)
    ):
        errors.append(
            InvalidField(
                type="enum",
                field="webhook_events_filter",
                description=f"webhook_events_filter must be a list of {', '.join(ALL_EVENTS)}",
            )
        )

    if errors:
        raise ValidationFailed(errors)
    return CreateRequest(
        input=payload,
        faults=faults,
        webhook=webhook,
        webhook_events_filter=list(events) if events is not None else None,
        version=version,
        destination=destination,
    )


def parse_prefer_wait(header: str | None) -> float | None:
    """Seconds to hold a create for `Prefer: wait` / `Prefer: wait=N`; None when not asked."""
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not value:
            return MAX_WAIT_SECONDS
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
        return min(max(seconds, 0.0), MAX_WAIT_SECONDS)
    return None


def parse_duration(value: str) -> float | None:
    """A Go-style duration (`1m`, `1h30m`, `500ms`, `90s`) or plain seconds, as seconds."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        return None
    return total
