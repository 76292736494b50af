"""Counters served by `GET /_emulator/stats`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Request kinds counted; anything else under /v1 is "other".
REQUEST_KINDS = ("create", "get", "cancel", "list", "file", "secret", "other")
WEBHOOK_COUNTERS = ("messages", "attempted", "delivered", "failed", "dropped", "throttled")


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

    def snapshot(self, predictions_by_status: dict[str, int]) -> dict[str, Any]:
        return {
            "requests": {kind: self.requests[kind] for kind in REQUEST_KINDS},
            "responses": dict(sorted(self.responses.items())),
            "webhooks": {name: self.webhooks[name] for name in WEBHOOK_COUNTERS},
            "predictions": predictions_by_status,
        }


def classify(method: str, path: str) -> str | None:
    """The request kind of a public call, or None for the emulator's own control routes."""
    if path.startswith("/_emulator") or not path.startswith(("/v1/", "/files/")):
        return None
    if path.startswith("/files/"):
        return "file"
    if path == "/v1/webhooks/default/secret":
        return "secret"
    parts = path.strip("/").split("/")
    if method == "POST":
        if parts[-1] == "cancel":
            return "cancel"
        if parts[-1] in ("predictions", "trainings"):
            return "create"
    if method == "GET" and len(parts) == 2 and parts[1] in ("predictions", "trainings"):
        return "list"
    if method == "GET" and len(parts) == 3 and parts[1] in ("predictions", "trainings"):
        return "get"
    return "other"
