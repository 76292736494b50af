"""Counters served by `GET /_emulator/stats`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

REQUEST_KINDS = ("create", "record", "file", "other")
CALLBACK_COUNTERS = (
    "messages",
    "attempted",
    "delivered",
    "failed",
    "dropped",
    "duplicates",
    "lies",
)


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    http_statuses: Counter[str] = field(default_factory=Counter)
    # KIE's body-level `code` of every API answer (200 included).
    codes: Counter[str] = field(default_factory=Counter)
    callbacks: Counter[str] = field(default_factory=Counter)

    def clear(self) -> None:
        self.requests.clear()
        self.http_statuses.clear()
        self.codes.clear()
        self.callbacks.clear()

    def record_response(self, kind: str, status_code: int) -> None:
        self.requests[kind] += 1
        self.http_statuses[str(status_code)] += 1

    def snapshot(self, tasks_by_state: dict[str, int]) -> dict[str, Any]:
        return {
            "requests": {kind: self.requests[kind] for kind in REQUEST_KINDS},
            "http_statuses": dict(sorted(self.http_statuses.items())),
            "codes": dict(sorted(self.codes.items())),
            "callbacks": {name: self.callbacks[name] for name in CALLBACK_COUNTERS},
            "tasks": tasks_by_state,
        }


def classify(path: str) -> str | None:
    """The request kind of a public call, or None for the emulator's own control routes."""
    if path == "/api/v1/jobs/createTask":
        return "create"
    if path == "/api/v1/jobs/recordInfo":
        return "record"
    if path.startswith("/files/"):
        return "file"
    if path.startswith("/_emulator"):
        return None
    return "other"
