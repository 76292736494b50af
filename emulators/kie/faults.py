"""Which calls get a 429, a 5xx-ish code or a rejection instead of their real answer.

Global counters (`PUT /_emulator/faults`) count down on any matching call. Per-task create
faults can't live on a task (none exists until a create succeeds), so they count per canonical
create body: a client that retries the same request sees N failures and then a success.
Per-task `record` faults count down on the task itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from emulators.kie.models import Faults, FaultTarget
from emulators.kie.records import Task


@dataclass(frozen=True)
class CallFault:
    """A body-level error code to answer instead of the real answer."""

    code: int
    retry_after: float | None = None


def body_key(body: Any) -> str:
    """A stable key for "the same create request", independent of JSON key order."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class FaultBook:
    """Global faults plus the per-request-body counters of create faults."""

    def __init__(self) -> None:
        self.global_faults = Faults()
        self._creates_seen: Counter[str] = Counter()

    def replace(self, faults: Faults) -> None:
        self.global_faults = faults

    def reset(self) -> None:
        self.global_faults = Faults()
        self._creates_seen.clear()

    def effective(self, specific: Faults | None) -> Faults:
        if specific is None:
            return self.global_faults.model_copy()
        return self.global_faults.overridden_by(specific)

    def on_create(self, key: str, specific: Faults | None) -> CallFault | None:
        """Whether this create fails, and how; counts it either way."""
        faults = self.effective(specific)
        if faults.reject_code is not None:
            return CallFault(faults.reject_code)
        explicit = specific.model_fields_set if specific is not None else set()
        if specific is not None and explicit & {"rate_limits", "server_errors"}:
            seen = self._creates_seen[key]
            self._creates_seen[key] += 1
            on_create = "create" in faults.errors_on
            limited = specific.rate_limits if "rate_limits" in explicit and on_create else 0
            errors = specific.server_errors if "server_errors" in explicit and on_create else 0
            if seen < limited:
                return CallFault(429, faults.retry_after_seconds)
            if seen < limited + errors:
                return CallFault(faults.server_error_code)
        return self._take_global("create", skip=explicit)

    def on_record(self, task: Task | None) -> CallFault | None:
        """Whether a recordInfo call fails: global counters first, then the task's own."""
        fault = self._take_global("record", skip=set())
        if fault is not None or task is None:
            return fault
        faults = task.faults
        if "record" not in faults.errors_on:
            return None
        if task.rate_limits_left > 0:
            task.rate_limits_left -= 1
            return CallFault(429, faults.retry_after_seconds)
        if task.server_errors_left > 0:
            task.server_errors_left -= 1
            return CallFault(faults.server_error_code)
        return None

    def _take_global(self, target: FaultTarget, *, skip: set[str]) -> CallFault | None:
        glob = self.global_faults
        if target not in glob.errors_on:
            return None
        if "rate_limits" not in skip and glob.rate_limits > 0:
            glob.rate_limits -= 1
            return CallFault(429, glob.retry_after_seconds)
        if "server_errors" not in skip and glob.server_errors > 0:
            glob.server_errors -= 1
            return CallFault(glob.server_error_code)
        return None
