"""Wire types of the KIE emulator: task states, body-level codes, fault switches, control bodies.

KIE answers errors inside the body: `{"code": 402, "msg": "...", "data": null}`, normally with
HTTP 200 (only unknown routes get a real 404). `http_status_mirrors_code` makes the HTTP status
repeat the code instead, which some KIE documentation pages show, so clients are tested on both.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

State = Literal["waiting", "queuing", "generating", "success", "fail"]
ALL_STATES: tuple[State, ...] = ("waiting", "queuing", "generating", "success", "fail")
TERMINAL_STATES: frozenset[str] = frozenset({"success", "fail"})

# Body-level codes from KIE's API docs. 433 is only described by third parties (UNCONFIRMED).
CODE_MESSAGES: dict[int, str] = {
    200: "success",
    400: "Bad Request - Missing or invalid parameters",
    401: "Unauthorized - Authentication credentials are missing or invalid",
    402: "Insufficient Credits - Account does not have enough credits to perform the operation",
    404: "Not Found - The requested resource or endpoint does not exist",
    422: "Validation Error - The request parameters failed validation checks",
    429: "Rate Limited - Request limit has been exceeded for this resource",
    433: "Sub-key usage limit exceeded",
    455: "Service Unavailable - System is currently undergoing maintenance",
    500: "Server Error - An unexpected error occurred while processing the request",
    501: "Generation Failed - Content generation task failed",
    505: "Feature Disabled - The requested feature is currently disabled",
}
# What recordInfo answers for a task id it does not know.
RECORD_NOT_FOUND = (422, "recordInfo is null")

FaultTarget = Literal["create", "record"]
_CREATE_ONLY: list[FaultTarget] = ["create"]


def envelope(code: int, msg: str | None = None, data: Any = None) -> dict[str, Any]:
    """KIE's answer shape (createTask and errors use `msg`)."""
    return {
        "code": code,
        "msg": msg if msg is not None else CODE_MESSAGES.get(code, ""),
        "data": data,
    }


class Faults(BaseModel):
    """Fault switches. Defaults mean "behave like KIE".

    Given globally (`PUT /_emulator/faults`) or per task (`input["_emulator"]`, removed before
    the task is stored); a per-task value wins over the global one field by field.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)

    # Outcome and timing of the task.
    fail: str | None = None
    fail_code: str = "500"
    stay_waiting: bool = False
    waiting_seconds: float | None = Field(default=None, ge=0)
    queuing_seconds: float | None = Field(default=None, ge=0)
    generating_seconds: float | None = Field(default=None, ge=0)
    file_ttl_seconds: float | None = Field(default=None, ge=0)
    file_bytes: int | None = Field(default=None, ge=0)

    # API answers. `reject_code` refuses every create with that body code (401, 402, 422, 433,
    # 501, 505 …); `rate_limits` and `server_errors` count down, then calls go through.
    reject_code: int | None = Field(default=None, ge=400, le=599)
    rate_limits: int = Field(default=0, ge=0)
    server_errors: int = Field(default=0, ge=0)
    server_error_code: int = Field(default=500, ge=400, le=599)  # 455: maintenance
    errors_on: list[FaultTarget] = Field(default_factory=lambda: _CREATE_ONLY.copy())
    retry_after_seconds: float | None = Field(default=None, ge=0)
    http_status_mirrors_code: bool = False
    # The task exists at once but createTask answers this much later: a client that gives up
    # (or dies) meanwhile made a task it never heard of.
    create_delay_seconds: float = Field(default=0, ge=0)

    # Callbacks.
    drop_callbacks: bool = False
    duplicate_callbacks: int = Field(default=0, ge=0)
    # The callback claims success with other result URLs than recordInfo gives; it is still
    # correctly signed, since the signature covers only `taskId.timestamp`.
    lie_in_callback: bool = False
    callback_delay_seconds: float = Field(default=0, ge=0)
    callback_task_id_key: Literal["taskId", "task_id"] = "taskId"
    callback_timestamp_skew_seconds: float = 0
    callback_bad_signature: bool = False
    omit_callback_signature: bool = False

    def overridden_by(self, specific: Faults) -> Faults:
        """These faults with every field that `specific` set explicitly replaced."""
        return self.model_copy(update=specific.model_dump(include=specific.model_fields_set))


class CompleteRequest(BaseModel):
    """Body of `POST /_emulator/tasks/{id}/complete`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    state: Literal["success", "fail"]
    fail_msg: str | None = Field(default=None, alias="failMsg")
    fail_code: str | None = Field(default=None, alias="failCode")


class ClockAdvance(BaseModel):
    """Body of `POST /_emulator/clock`."""

    model_config = ConfigDict(extra="forbid")

    advance_seconds: float = Field(ge=0)
