"""Wire types of the emulator: statuses, webhook events, fault switches, control and error bodies."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emulators.scaffold.faults import WebhookFaults

Status = Literal["starting", "processing", "succeeded", "failed", "canceled", "aborted"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "canceled", "aborted"})
ALL_STATUSES: tuple[Status, ...] = (
    "starting",
    "processing",
    "succeeded",
    "failed",
    "canceled",
    "aborted",
)

WebhookEvent = Literal["start", "output", "logs", "completed"]
ALL_EVENTS: tuple[WebhookEvent, ...] = ("start", "output", "logs", "completed")

# The calls the call switches can hit (kinds of `classify` in `api.py`).
FaultTarget = Literal["create", "get", "cancel", "list", "file"]
_CREATE_ONLY: list[FaultTarget] = ["create"]


class Faults(WebhookFaults):
    """Fault switches: the common ones (`scaffold.faults`) and Replicate's own.

    Given globally (`PUT /_emulator/faults`) or per prediction (`input["_emulator"]`); a
    per-prediction value wins over the global one field by field.
    """

    errors_on: list[FaultTarget] = Field(default_factory=lambda: _CREATE_ONLY.copy())
    drop_events: list[WebhookEvent] = Field(default_factory=list)
    fail: str | None = None
    # The prediction IS created (and runs, webhooks and all) but its create call answers 500:
    # per prediction, the first N identical create bodies; globally, the next N creates. What
    # a client sees when the answer to a create that did happen is lost.
    lost_create_responses: int = Field(default=0, ge=0)
    # List pages leave `webhook` out of their items (Replicate doesn't document it there):
    # a client must GET the prediction to read it.
    list_without_webhook: bool = False
    stay_starting: bool = False
    starting_seconds: float | None = Field(default=None, ge=0)
    processing_seconds: float | None = Field(default=None, ge=0)
    file_ttl_seconds: float | None = Field(default=None, ge=0)
    file_bytes: int | None = Field(default=None, ge=0)
    # Output file downloads take about this long (headers at once, the body spread over it).
    file_delay_seconds: float | None = Field(default=None, ge=0)
    # Output files are sent chunked, without Content-Length (the size is known only at the end).
    file_without_length: bool = False
    # A model a hostile user published: the prediction's `output` is this string instead of
    # the emulator's file URLs (e.g. `http://169.254.169.254/...`, or this emulator's
    # `/_emulator/redirect?to=...`). Anyone may name any model at Replicate, so a client must
    # treat outputs as untrusted URLs.
    output_url: str | None = None


class CompleteRequest(BaseModel):
    """Body of `POST /_emulator/predictions/{id}/complete`."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["succeeded", "failed", "canceled", "aborted"]
    error: str | None = None


class InvalidField(BaseModel):
    """One entry of Replicate's `invalid_fields` list."""

    type: str
    field: str
    description: str


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 7807 body as Replicate shapes its errors."""
    return {"title": title, "detail": detail, "status": status, **extra}


NOT_FOUND = problem(404, "Not found", "Not found.")
UNAUTHENTICATED = problem(401, "Unauthenticated", "You did not pass a valid authentication token")


def rate_limit_body(retry_after: float) -> dict[str, Any]:
    retry_after = float(retry_after)
    shown: float | int = int(retry_after) if retry_after.is_integer() else retry_after
    return {
        "detail": f"Request was throttled. Your rate limit resets in ~{math.ceil(retry_after)}s.",
        "status": 429,
        "retry_after": shown,
    }


SERVER_ERROR_BODY: dict[str, Any] = {
    "title": "Internal Server Error",
    "detail": "Internal server error (injected by the emulator)",
    "status": 500,
}
