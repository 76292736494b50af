"""Counters served by `GET /_emulator/stats`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

REQUEST_KINDS = ("submit", "status", "result", "cancel", "file", "jwks", "other")
WEBHOOK_COUNTERS = ("messages", "attempted", "delivered", "failed", "dropped")


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)

    def clear(self) -> None:
        self.requests.clear()
        self.responses.clear()
        self.webhooks.clear()

    def record_response(self, kind: str, status_code: int) -> None:
        self.requests[kind] += 1
        self.responses[str(status_code)] += 1

    def snapshot(self, by_status: dict[str, int], by_outcome: dict[str, int]) -> dict[str, Any]:
        return {
            "requests": {kind: self.requests[kind] for kind in REQUEST_KINDS},
            "responses": dict(sorted(self.responses.items())),
            "webhooks": {name: self.webhooks[name] for name in WEBHOOK_COUNTERS},
            "queue": by_status,
            "outcomes": by_outcome,
        }


def classify(method: str, path: str) -> str | None:
    """The kind of a public call, or None for the emulator's own control routes."""
    if path.startswith("/_emulator"):
        return None
    if path.startswith("/files/"):
        return "file"
    if path == "/.well-known/jwks.json":
        return "jwks"
    parts = path.strip("/").split("/")
    if method == "POST":
        return "submit"
    if "requests" in parts[:-1]:
        last = len(parts) - 1 - parts[::-1].index("requests")
        tail = parts[last + 1 :]
        if method == "GET" and tail[1:] == ["status"]:
            return "status"
        if method == "GET" and len(tail) == 1:
            return "result"
        if method == "PUT" and tail[1:] == ["cancel"]:
            return "cancel"
    return "other"
