"""One queue request as the emulator keeps it, and its fal JSON forms.

fal shows only three statuses; how a COMPLETED request ended (`outcome`) is visible in its
result (`GET .../requests/{id}`: the model's own status code and body), in `error` and
`error_type` on the status of a platform failure, and in the webhook's `status`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulators.fal.models import (
    CANCELLED_DETAIL,
    CANCELLED_ERROR_TYPE,
    Faults,
    Outcome,
    QueueStatus,
    detail,
    validation_error,
)
from emulators.fal.outputs import with_urls
from emulators.scaffold.faults import JobFaults
from emulators.scaffold.inputs import FromInput
from emulators.scaffold.media import FileSpec


def new_request_id() -> str:
    """fal's request ids are UUID4s."""
    return str(uuid.uuid4())


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


@dataclass
class Failure:
    """How a request failed: the result's HTTP status and body, and what the status shows."""

    status_code: int
    body: dict[str, Any]
    error_type: str | None
    # Platform failures also show on the status (`error`, `error_type`); a model's own 4xx
    # shows only in the result, as fal does for validation errors.
    on_status: bool

    @classmethod
    def model_error(cls, message: str, status_code: int, error_type: str | None) -> Failure:
        if status_code == 422 and error_type is None:
            return cls(422, validation_error(message), None, on_status=False)
        error_type = error_type or "internal_error"
        return cls(status_code, detail(message, error_type), error_type, on_status=True)

    @classmethod
    def cancelled(cls) -> Failure:
        body = detail(CANCELLED_DETAIL, CANCELLED_ERROR_TYPE)
        return cls(400, body, CANCELLED_ERROR_TYPE, on_status=True)

    @property
    def message(self) -> str:
        value = self.body.get("detail")
        if isinstance(value, list) and value and isinstance(value[0], dict):
            return str(value[0].get("msg", ""))
        return str(value)


@dataclass
class Record:
    """Mutable state of one request; only the event loop thread touches it, so no locks."""

    id: str
    model_id: str  # as submitted, subpath included (`fal-ai/flux/dev`)
    app_id: str  # what status, result and cancel URLs use (`fal-ai/flux`)
    input: dict[str, Any]
    base_url: str
    faults: Faults
    webhook: str | None
    files: dict[str, FileSpec]
    payload: dict[str, Any] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)  # the payload with file names
    # The input image its PNGs are still to be made from (None once made, or never needed).
    source: FromInput | None = None
    status: QueueStatus = "IN_QUEUE"
    outcome: Outcome | None = None
    failure: Failure | None = None
    logs: list[dict[str, str]] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    cancel_requested: bool = False
    files_expired: bool = False
    result_expired: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    job_faults: JobFaults = field(default_factory=JobFaults)  # its own call switches, counted
    queue_seconds: float = 0.0
    run_seconds: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    rendered: asyncio.Event = field(default_factory=asyncio.Event)  # its files are final

    @property
    def terminal(self) -> bool:
        return self.status == "COMPLETED"

    @property
    def response_url(self) -> str:
        return f"{self.base_url}/{self.app_id}/requests/{self.id}"

    def urls(self) -> dict[str, str]:
        return {
            "response_url": self.response_url,
            "status_url": f"{self.response_url}/status",
            "cancel_url": f"{self.response_url}/cancel",
        }

    def file_url(self, name: str) -> str:
        return f"{self.base_url}/files/{self.id}/{name}"

    def fill_payload(self) -> None:
        """The result from the template, with the files' URLs and sizes as they are now."""
        self.payload = with_urls(
            self.template, {n: self.file_url(n) for n in self.files}, self.files
        )

    def submit_json(self, queue_position: int) -> dict[str, Any]:
        """The submit answer."""
        return {
            "request_id": self.id,
            "gateway_request_id": self.id,
            **self.urls(),
            "queue_position": queue_position,
        }

    def status_json(self, queue_position: int | None, *, with_logs: bool) -> dict[str, Any]:
        """`GET .../status`: `queue_position` and `logs` are always there (fal_client needs them)."""
        body: dict[str, Any] = {
            "status": self.status,
            "request_id": self.id,
            **self.urls(),
            "queue_position": queue_position if self.status == "IN_QUEUE" else None,
            "logs": list(self.logs) if with_logs else None,
        }
        if self.status == "COMPLETED":
            body["metrics"] = self.metrics()
            if self.failure is not None and self.failure.on_status:
                body["error"] = self.failure.message
                body["error_type"] = self.failure.error_type
        return body

    def metrics(self) -> dict[str, float]:
        """fal's accounting: a request that ran its course reports its planned run time (so
        tests can predict costs), one cut short the time it ran."""
        if self.completed_at is None or self.started_at is None:
            return {}
        ran = self.completed_at - self.started_at
        planned = self.run_seconds if self.outcome == "ok" else ran
        return {"inference_time": round(planned, 6)}

    def webhook_json(self) -> dict[str, Any]:
        """The one terminal webhook's body."""
        body: dict[str, Any] = {
            "request_id": self.id,
            "gateway_request_id": self.id,
            "status": "OK" if self.failure is None else "ERROR",
            "payload": self.payload if self.failure is None else self.failure.body,
            "error": None,
            "payload_error": None,
        }
        if self.failure is not None:
            body["error"] = f"Invalid status code: {self.failure.status_code}"
        elif self.faults.webhook_payload_error:
            body["payload"] = None
            body["payload_error"] = "Response payload is not JSON serializable"
        return body

    def log(self, message: str, at: float | None = None) -> None:
        when = time.time() if at is None else at
        entry = {"message": message, "level": "INFO", "source": "user", "timestamp": iso(when)}
        self.logs.append(entry)

    def timeline(self) -> dict[str, Any]:
        """Unix-float times and the event history, for benches and tests."""
        return {
            "id": self.id,
            "model_id": self.model_id,
            "status": self.status,
            "outcome": self.outcome,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "events": list(self.history),
        }
