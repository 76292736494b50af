"""Which calls get a 429 or a 500 instead of their real answer.

Global counters (`PUT /_emulator/faults`) count down on any matching call. Per-request submit
faults can't live on a request (none exists until a submit succeeds), so they count per
canonical submit (path and body): a client that retries the same submit sees N failures and
then a success, which is exactly the retry path worth testing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from enum import Enum
from typing import Any

from emulators.fal.models import Faults, FaultTarget, detail

RATE_LIMIT_ERROR_TYPE = "rate_limited"  # wording UNCONFIRMED; fal documents no submit 429 body


class CallFault(Enum):
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"


def submit_key(path: str, body: Any) -> str:
    """A stable key for "the same submit", independent of JSON key order."""
    canonical = json.dumps({"path": path, "body": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def rate_limit_answer(
    retry_after: float, with_header: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """Body and headers of a 429; `Retry-After` in whole seconds, as HTTP wants."""
    body = detail("Rate limit exceeded, retry later", RATE_LIMIT_ERROR_TYPE)
    headers = {"x-fal-error-type": RATE_LIMIT_ERROR_TYPE}
    if with_header:
        headers["retry-after"] = str(math.ceil(retry_after))
    return body, headers


class FaultBook:
    """Global faults plus the per-submit counters of submit faults."""

    def __init__(self) -> None:
        self.global_faults = Faults()
        self._submits_seen: Counter[str] = Counter()

    def replace(self, faults: Faults) -> None:
        self.global_faults = faults

    def reset(self) -> None:
        self.global_faults = Faults()
        self._submits_seen.clear()

    def effective(self, specific: Faults | None) -> Faults:
        if specific is None:
            return self.global_faults.model_copy()
        return self.global_faults.overridden_by(specific)

    def on_submit(self, key: str, specific: Faults | None) -> CallFault | None:
        """Whether this submit fails; counts it either way."""
        explicit = specific.model_fields_set if specific is not None else set()
        if specific is not None and explicit & {"rate_limit_submits", "server_errors"}:
            seen = self._submits_seen[key]
            self._submits_seen[key] += 1
            limited = specific.rate_limit_submits if "rate_limit_submits" in explicit else 0
            errors = 0
            if (
                "server_errors" in explicit
                and "submit" in self.effective(specific).server_errors_on
            ):
                errors = specific.server_errors
            if seen < limited:
                return CallFault.RATE_LIMITED
            if seen < limited + errors:
                return CallFault.SERVER_ERROR
        glob = self.global_faults
        if "rate_limit_submits" not in explicit and glob.rate_limit_submits > 0:
            glob.rate_limit_submits -= 1
            return CallFault.RATE_LIMITED
        if "server_errors" not in explicit and self.take_global_error("submit"):
            return CallFault.SERVER_ERROR
        return None

    def take_global_error(self, target: FaultTarget) -> bool:
        """Whether a call gets a global 500 (and counts it)."""
        glob = self.global_faults
        if glob.server_errors > 0 and target in glob.server_errors_on:
            glob.server_errors -= 1
            return True
        return False
