"""One KIE task as the emulator keeps it, and its `recordInfo` form."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any

from emulators.kie.models import TERMINAL_STATES, Faults, State
from emulators.scaffold.faults import JobFaults
from emulators.scaffold.media import FileSpec


def new_task_id() -> str:
    """`task_` and 32 hex digits (KIE's ids look like `task_…` or bare hex)."""
    return "task_" + os.urandom(16).hex()


def millis(timestamp: float | None) -> int | None:
    """KIE writes times as Unix milliseconds."""
    return None if timestamp is None else int(timestamp * 1000)


@dataclass
class Task:
    """Mutable state of one task; only the event loop thread touches it, so no locks."""

    id: str
    model: str
    input: dict[str, Any]
    callback_url: str | None
    base_url: str
    faults: Faults
    files: dict[str, FileSpec]
    created_at: float
    waiting_seconds: float
    queuing_seconds: float
    generating_seconds: float
    file_ttl_seconds: float
    # What the task costs when it succeeds (`creditsConsumed`), fixed when it is created.
    credits: int = 0
    state: State = "waiting"
    fail_code: str = ""
    fail_msg: str = ""
    updated_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    files_removed: bool = False
    # Its own call switches (`record` faults count down here; creates count per request body).
    job_faults: JobFaults = field(default_factory=JobFaults)
    history: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    rendered: asyncio.Event = field(default_factory=asyncio.Event)  # its files are final

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def file_url(self, name: str) -> str:
        return f"{self.base_url}/files/{self.id}/{name}"

    def result_urls(self) -> list[str]:
        return [self.file_url(name) for name in self.files]

    def param(self) -> str:
        """The original request as a JSON string, as recordInfo's `param` holds it."""
        request: dict[str, Any] = {"model": self.model}
        if self.callback_url is not None:
            request["callBackUrl"] = self.callback_url
        request["input"] = self.input
        return json.dumps(request, separators=(",", ":"))

    def to_data(self) -> dict[str, Any]:
        """recordInfo's `data`: `resultJson` is a JSON *string*, empty until success."""
        success = self.state == "success"
        cost = None
        if success and self.started_at is not None and self.completed_at is not None:
            cost = int(self.generating_seconds * 1000)  # as planned: tests predict it
        return {
            "taskId": self.id,
            "model": self.model,
            "state": self.state,
            "param": self.param(),
            "resultJson": result_json(self.result_urls()) if success else "",
            "failCode": self.fail_code,
            "failMsg": self.fail_msg,
            "costTime": cost,
            # What KIE bills, in credits (UNCONFIRMED name: seen in clients, not in the docs).
            "creditsConsumed": self.credits if success else 0,
            "completeTime": millis(self.completed_at),
            "createTime": millis(self.created_at),
            "updateTime": millis(self.updated_at),
        }

    def timeline(self) -> dict[str, Any]:
        return {"taskId": self.id, "state": self.state, "events": list(self.history)}


# Credits per output file (KIE's prices are per image or per video, in credits).
IMAGE_CREDITS = 4
VIDEO_CREDITS = 60


def credits_for(video: bool, files: int) -> int:
    """What a task making `files` outputs costs: fixed per model kind and output."""
    return (VIDEO_CREDITS if video else IMAGE_CREDITS) * max(files, 1)


def result_json(urls: list[str]) -> str:
    return json.dumps({"resultUrls": urls}, separators=(",", ":"))
