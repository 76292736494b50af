"""Wire types of the emulator: statuses, webhook events, fault switches and control bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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

FaultTarget = Literal["create", "get", "cancel"]
_CREATE_ONLY: list[FaultTarget] = ["create"]


class Faults(BaseModel):
    """Fault switches. Defaults mean "behave like Replicate".

    Given globally (`PUT /_emulator/faults`) or per prediction (`input["_emulator"]`); a
    per-prediction value wins over the global one field by field, which is why merging looks at
    `model_fields_set` rather than at the values.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    drop_webhooks: bool = False
    drop_events: list[WebhookEvent] = Field(default_factory=list)
    duplicate_webhooks: int = Field(default=0, ge=0)
    webhook_delay_seconds: float = Field(default=0, ge=0)
    reorder_webhooks: bool = False
    fail: str | None = None
    rate_limit_creates: int = Field(default=0, ge=0)
    retry_after_seconds: float = Field(default=1, ge=0)
    retry_after_header: bool = True
    server_errors: int = Field(default=0, ge=0)
    server_errors_on: list[FaultTarget] = Field(default_factory=lambda: _CREATE_ONLY.copy())
    # The prediction IS created (and runs, webhooks and all) but its create call answers 500:
    # per prediction, the first N identical create bodies; globally, the next N creates. What
    # a client sees when the answer to a create that did happen is lost.
    lost_create_responses: int = Field(default=0, ge=0)
    # The prediction exists at once, but the create call answers only this much later: a
    # client that times out meanwhile can't tell whether it was created.
    create_delay_seconds: float = Field(default=0, ge=0)
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

    def overridden_by(self, specific: Faults) -> Faults:
        """These faults with every field that `specific` set explicitly replaced."""
        return self.model_copy(update=specific.model_dump(include=specific.model_fields_set))


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
