"""Wire types of the emulator: queue statuses, fault switches, control bodies, error bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emulators.scaffold.faults import WebhookFaults

QueueStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
ALL_STATUSES: tuple[QueueStatus, ...] = ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")

# How a COMPLETED request ended; fal itself only says COMPLETED and shows errors in the result.
Outcome = Literal["ok", "error", "cancelled"]

# The calls the call switches can hit (kinds of `classify` in `api.py`).
FaultTarget = Literal["submit", "status", "result", "cancel", "file"]
_SUBMIT_ONLY: list[FaultTarget] = ["submit"]

# Error type of a cancelled request, in its status, result and webhook. UNCONFIRMED: fal
# documents the cancel call but not what a cancelled request looks like afterwards.
CANCELLED_ERROR_TYPE = "request_cancelled"
CANCELLED_DETAIL = "Request was cancelled"
RATE_LIMIT_ERROR_TYPE = "rate_limited"  # wording UNCONFIRMED; fal documents no submit 429 body


class Faults(WebhookFaults):
    """Fault switches: the common ones (`scaffold.faults`) and fal's own.

    Given globally (`PUT /_emulator/faults`) or per request (`"_emulator"` in the submitted
    input); a per-request value wins over the global one field by field.
    """

    errors_on: list[FaultTarget] = Field(default_factory=lambda: _SUBMIT_ONLY.copy())
    # Sign webhooks with a key that is not in the JWKS (receivers must reject them).
    webhook_wrong_key: bool = False
    # `"payload": null` plus `payload_error`, as fal sends for output it can't serialise.
    webhook_payload_error: bool = False
    # The model fails: 422 gives fal's validation shape, any other code `{detail, error_type}`.
    fail: str | None = None
    fail_status_code: int = Field(default=422, ge=400, le=599)
    fail_error_type: str | None = None
    stay_queued: bool = False
    # A runner that ignores the cancellation signal and finishes anyway.
    ignore_cancel: bool = False
    queue_seconds: float | None = Field(default=None, ge=0)
    run_seconds: float | None = Field(default=None, ge=0)
    file_ttl_seconds: float | None = Field(default=None, ge=0)
    result_ttl_seconds: float | None = Field(default=None, ge=0)
    file_bytes: int | None = Field(default=None, ge=0)
    # Output file downloads take about this long (headers at once, the body spread over it).
    file_delay_seconds: float | None = Field(default=None, ge=0)


class CompleteRequest(BaseModel):
    """Body of `POST /_emulator/requests/{id}/complete`."""

    model_config = ConfigDict(extra="forbid")

    outcome: Outcome = "ok"
    error: str | None = None
    status_code: int = Field(default=422, ge=400, le=599)


class RotateRequest(BaseModel):
    """Body of `POST /_emulator/keys/rotate`."""

    model_config = ConfigDict(extra="forbid")

    # Keep serving the old public key in the JWKS (a graceful rotation).
    keep_old: bool = True


def detail(message: str, error_type: str | None = None) -> dict[str, Any]:
    """fal's flat error body; platform errors carry an `error_type`."""
    body: dict[str, Any] = {"detail": message}
    if error_type is not None:
        body["error_type"] = error_type
    return body


def validation_error(message: str, loc: list[str] | None = None) -> dict[str, Any]:
    """fal's 422 body for input a model rejects (FastAPI's shape)."""
    return {"detail": [{"loc": loc or ["body"], "msg": message, "type": "value_error"}]}


UNAUTHORIZED = detail("Invalid key credentials")  # wording UNCONFIRMED
NOT_FOUND = detail("Request not found")
# A gateway error, not a model's: no `error_type`, so clients retry it (fal_client does).
SERVER_ERROR = detail("Internal Server Error (injected by the emulator)")
STILL_RUNNING = detail("Request is still in progress")
RESULT_EXPIRED = detail("The result of this request has expired", "result_expired")
