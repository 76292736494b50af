"""Which calls get a 429 or a 500 instead of their real answer.

Global counters (`PUT /_emulator/faults`) count down on any matching call. Per-prediction
create faults can't live on a prediction (none exists until a create succeeds), so they count
per canonical create body: a client that retries the same request sees N failures and then a
success, which is exactly the retry path worth testing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from enum import Enum
from typing import Any

from emulators.replicate.models import Faults, FaultTarget


class CallFault(Enum):
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"


def body_key(path: str, body: Any) -> str:
    """A stable key for "the same create request", independent of JSON key order."""
    canonical = json.dumps({"path": path, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def rate_limit_body(retry_after: float) -> dict[str, Any]:
    retry_after = float(retry_after)
    shown: float | int = int(retry_after) if retry_after.is_integer() else retry_after
    return {
        "detail": f"Request was throttled. Your rate limit resets in ~{math.ceil(retry_after)}s.",
        "status": 429,
        "retry_after": shown,
    }


def retry_after_header(retry_after: float) -> str:
    # HTTP wants whole seconds; replicate-python only honours the header when it `isdigit()`.
    return str(math.ceil(retry_after))


SERVER_ERROR_BODY: dict[str, Any] = {
    "title": "Internal Server Error",
    "detail": "Internal server error (injected by the emulator)",
    "status": 500,
}


class FaultBook:
    """Global faults plus the per-request-body counters of create faults."""

    def __init__(self) -> None:
        self.global_faults = Faults()
        self._creates_seen: Counter[str] = Counter()
        self._answers_lost: Counter[str] = Counter()

    def replace(self, faults: Faults) -> None:
        self.global_faults = faults

    def reset(self) -> None:
        self.global_faults = Faults()
        self._creates_seen.clear()
        self._answers_lost.clear()

    def effective(self, specific: Faults | None) -> Faults:
        if specific is None:
            return self.global_faults.model_copy()
        return self.global_faults.overridden_by(specific)

    def on_create(self, key: str, specific: Faults | None) -> CallFault | None:
        """Whether this create call fails; counts it either way."""
        explicit = specific.model_fields_set if specific is not None else set()
        if specific is not None and explicit & {"rate_limit_creates", "server_errors"}:
            seen = self._creates_seen[key]
            self._creates_seen[key] += 1
            rate_limited = specific.rate_limit_creates if "rate_limit_creates" in explicit else 0
            errors = 0
            if (
                "server_errors" in explicit
                and "create" in self.effective(specific).server_errors_on
            ):
                errors = specific.server_errors
            if seen < rate_limited:
                return CallFault.RATE_LIMITED
            if seen < rate_limited + errors:
                return CallFault.SERVER_ERROR
        glob = self.global_faults
        if "rate_limit_creates" not in explicit and glob.rate_limit_creates > 0:
            glob.rate_limit_creates -= 1
            return CallFault.RATE_LIMITED
        if "server_errors" not in explicit and self._take_global_error("create"):
            return CallFault.SERVER_ERROR
        return None

    def lose_answer(self, key: str, specific: Faults | None) -> bool:
        """Whether the answer to a create that did happen is lost (a 500 instead); counts it."""
        if specific is not None and "lost_create_responses" in specific.model_fields_set:
            seen = self._answers_lost[key]
            self._answers_lost[key] += 1
            return seen < specific.lost_create_responses
        glob = self.global_faults
        if glob.lost_create_responses > 0:
            glob.lost_create_responses -= 1
            return True
        return False

    def on_call(self, target: FaultTarget) -> bool:
        """Whether a get or cancel call gets a global 500."""
        return self._take_global_error(target)

    def _take_global_error(self, target: FaultTarget) -> bool:
        glob = self.global_faults
        if glob.server_errors > 0 and target in glob.server_errors_on:
            glob.server_errors -= 1
            return True
        return False
