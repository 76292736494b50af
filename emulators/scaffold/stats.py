"""Counters served by `GET /_emulator/stats`: the same sections for every emulator.

- `requests`: answered calls by kind (the emulator's `classify`; control routes not counted);
- `responses`: the same calls by HTTP status, and `responses_by_kind` both ways;
- `faults`: calls the fault switches hit (`rate_limited`, `server_errors`,
  `dropped_connections`, `delayed`);
- `webhooks`: for emulators that send them, messages and attempts (see `scaffold.webhooks`).

An emulator adds its own sections (jobs by status, ...) next to these.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

FAULT_COUNTERS = ("rate_limited", "server_errors", "dropped_connections", "delayed")
WEBHOOK_COUNTERS = (
    "messages",
    "attempted",
    "delivered",
    "failed",
    "dropped",
    "duplicates",
    "delayed",
    "reordered",
)


class Stats:
    def __init__(self, request_kinds: tuple[str, ...], webhook_counters: tuple[str, ...] = ()):
        self.request_kinds = request_kinds
        # Empty for an emulator that sends no webhooks (its snapshot has no `webhooks`).
        self.webhook_counters = webhook_counters
        self.responses: Counter[tuple[str, int]] = Counter()
        self.faults: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter()

    def clear(self) -> None:
        self.responses.clear()
        self.faults.clear()
        self.webhooks.clear()

    def record_response(self, kind: str, status_code: int) -> None:
        self.responses[(kind, status_code)] += 1

    def count_fault(self, outcome: str) -> None:
        """One call hit by a fault (`rate_limited`, `server_error`, `drop` or `delayed`)."""
        name = {"server_error": "server_errors", "drop": "dropped_connections"}.get(outcome)
        self.faults[name or outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        by_kind: dict[str, dict[str, int]] = {kind: {} for kind in self.request_kinds}
        by_status: Counter[str] = Counter()
        for (kind, status), count in sorted(self.responses.items()):
            by_kind.setdefault(kind, {})[str(status)] = count
            by_status[str(status)] += count
        body: dict[str, Any] = {
            "requests": {kind: sum(statuses.values()) for kind, statuses in by_kind.items()},
            "responses": dict(sorted(by_status.items())),
            "responses_by_kind": by_kind,
            "faults": {name: self.faults[name] for name in FAULT_COUNTERS},
        }
        if self.webhook_counters:
            body["webhooks"] = {name: self.webhooks[name] for name in self.webhook_counters}
        return body
