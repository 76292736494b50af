"""One prediction or training as the emulator keeps it, and its Replicate JSON form."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from emulators.replicate.models import TERMINAL_STATUSES, Faults, Status, WebhookEvent
from emulators.scaffold.faults import JobFaults
from emulators.scaffold.inputs import FromInput
from emulators.scaffold.media import FileSpec

RecordKind = Literal["prediction", "training"]
WEB_URL = "https://replicate.com/p/{id}"


def new_id() -> str:
    """26 lowercase base32 characters, like Replicate's prediction ids."""
    return base64.b32encode(os.urandom(16)).decode().rstrip("=").lower()


def derived_version(seed: str) -> str:
    """A stable 64-hex version id (for deployments and trained versions)."""
    return hashlib.sha256(seed.encode()).hexdigest()


def iso(timestamp: float | None) -> str | None:
    """Unix seconds as Replicate writes times: ISO-8601 UTC with a `Z`."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class PendingWebhook:
    """A terminal webhook not yet delivered (nor given up on): resent as is after a restart."""

    event: WebhookEvent
    msg_id: str
    body: str
    status: str


@dataclass
class Record:
    """Mutable state of one job; only the event loop thread touches it, so no locks."""

    id: str
    kind: RecordKind
    model: str
    version: str
    input: dict[str, Any]
    base_url: str
    faults: Faults
    webhook: str | None
    webhook_events_filter: list[str] | None
    files: dict[str, FileSpec]
    final_output: Any = None
    deployment: str | None = None
    destination: str | None = None
    deadline: float | None = None
    status: Status = "starting"
    output: Any = None
    logs: str = ""
    error: str | None = None
    data_removed: bool = False
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    published: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)
    job_faults: JobFaults = field(default_factory=JobFaults)  # its own call switches, counted
    # Resolved when the job is created, so a restarted emulator keeps to the same timeline.
    starting_seconds: float = 0.0
    processing_seconds: float = 0.0
    halfway: bool = False  # the mid-processing log line (and partial output) has happened
    pending_webhook: PendingWebhook | None = None
    # The input image its PNGs are still to be made from (None once made, or never needed).
    source: FromInput | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    rendered: asyncio.Event = field(default_factory=asyncio.Event)  # its files are final

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def path_prefix(self) -> str:
        return "/v1/trainings" if self.kind == "training" else "/v1/predictions"

    def file_url(self, name: str) -> str:
        return f"{self.base_url}/files/{self.id}/{name}"

    def to_json(self) -> dict[str, Any]:
        """The object Replicate returns from GET, create, cancel and in webhook bodies."""
        api = f"{self.base_url}{self.path_prefix}/{self.id}"
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "output": None if self.data_removed else self.output,
            "data_removed": self.data_removed,
            "error": self.error,
            "status": self.status,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "source": "api",
            "urls": {"get": api, "cancel": f"{api}/cancel", "web": WEB_URL.format(id=self.id)},
            "metrics": self._metrics(),
            "webhook": self.webhook,
            "webhook_events_filter": self.webhook_events_filter,
        }
        if self.deadline is not None:
            body["deadline"] = iso(self.deadline)
        if self.deployment is not None:
            body["deployment"] = self.deployment
        if self.kind == "training":
            body["destination"] = self.destination
        return body

    def _metrics(self) -> dict[str, float]:
        """Replicate's accounting: `predict_time` is what it bills. A prediction that ran its
        course reports its planned processing time (so tests can predict costs), one cut short
        the time it ran."""
        if self.completed_at is None:
            return {}
        metrics = {"total_time": round(self.completed_at - self.created_at, 6)}
        if self.started_at is not None:
            ran = self.completed_at - self.started_at
            planned = self.processing_seconds if self.status == "succeeded" else ran
            metrics["predict_time"] = round(planned, 6)
        return metrics

    def timeline(self) -> dict[str, Any]:
        """Unix-float times and the event history, for benches and tests."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "events": list(self.history),
        }
