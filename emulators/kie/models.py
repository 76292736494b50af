"""Wire types of the KIE emulator: task states, body-level codes, fault switches, control bodies.

KIE answers errors inside the body: `{"code": 402, "msg": "...", "data": null}`, normally with
HTTP 200 (only unknown routes get a real 404). `http_status_mirrors_code` makes the HTTP status
repeat the code instead, which some KIE documentation pages show, so clients are tested on both.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emulators.scaffold.faults import WebhookFaults

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

# The calls the call switches can hit (kinds of `classify` in `api.py`).
FaultTarget = Literal["create", "record", "file"]
_CREATE_ONLY: list[FaultTarget] = ["create"]


def envelope(code: int, msg: str | None = None, data: Any = None) -> dict[str, Any]:
    """KIE's answer shape (createTask and errors use `msg`)."""
    return {
        "code": code,
        "msg": msg if msg is not None else CODE_MESSAGES.get(code, ""),
        "data": data,
    }


class Faults(WebhookFaults):
    """Fault switches: the common ones (`scaffold.faults`) and KIE's own.

    Given globally (`PUT /_emulator/faults`) or per task (`input["_emulator"]`, removed before
    the task is stored); a per-task value wins over the global one field by field. The common
    `rate_limits` and `server_errors` answer body code 429 and `server_error_code`.
    """

    errors_on: list[FaultTarget] = Field(default_factory=lambda: _CREATE_ONLY.copy())
    retry_after_seconds: float | None = Field(default=None, ge=0)

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
    # 501, 505 …).
    reject_code: int | None = Field(default=None, ge=400, le=599)
    server_error_code: int = Field(default=500, ge=400, le=599)  # 455: maintenance
    http_status_mirrors_code: bool = False

    # Callbacks (the common webhook switches drop, duplicate, delay and reorder them).
    # The callback claims success with other result URLs than recordInfo gives; it is still
    # correctly signed, since the signature covers only `taskId.timestamp`.
    lie_in_callback: bool = False
    callback_task_id_key: Literal["taskId", "task_id"] = "taskId"
    callback_timestamp_skew_seconds: float = 0
    callback_bad_signature: bool = False
    omit_callback_signature: bool = False


class KieError(Exception):
    """A body-level error answer (`{"code": N, "msg": …, "data": null}`), rendered in `app.py`.

    The HTTP status is 200, as KIE sends it, unless the faults in force mirror the code.
    """

    def __init__(
        self,
        code: int,
        msg: str | None = None,
        *,
        faults: Faults | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.msg = msg or CODE_MESSAGES.get(code, f"error {code}")
        super().__init__(self.msg)
        self.http_status = code if faults is not None and faults.http_status_mirrors_code else 200
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return envelope(self.code, self.msg)


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
