"""Per-token rate limiting with a sliding window, strict enough to promise per-second maxima,
and the per-second record of what it admitted.

With a limit of `r` ≥ 1 requests a second, at most `floor(r)` requests are admitted in any
window of one second; below 1, one request in any window of `1/r` seconds. A sliding window
(rather than a bucket that refills continuously) is what lets the stats promise that no
calendar second ever saw more than the limit served, which is what a client's own limiter is
tested against.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

# Per-second entries are kept this long, so a long-running dev emulator stays small.
PER_SECOND_HISTORY = 3600


def window_of(limit: float) -> tuple[int, float]:
    """(requests admitted per window, window length in seconds) for `limit` per second."""
    if limit >= 1:
        return math.floor(limit), 1.0
    return 1, 1.0 / limit


class SlidingWindowLimiter:
    def __init__(self) -> None:
        self._admitted: dict[str, deque[float]] = {}

    def admit(self, key: str, limit: float | None, now: float) -> float | None:
        """None when `key` may be served at `now` (and it is counted), else seconds to wait."""
        if limit is None:
            return None
        capacity, window = window_of(limit)
        admitted = self._admitted.setdefault(key, deque())
        while admitted and admitted[0] <= now - window:
            admitted.popleft()
        if len(admitted) < capacity:
            admitted.append(now)
            return None
        return admitted[0] + window - now

    def reset(self) -> None:
        self._admitted.clear()


def retry_after_seconds(wait: float) -> int:
    """Whole seconds for `Retry-After`, never 0 (a client told 0 would retry at once)."""
    return max(1, math.ceil(wait))


class Admissions:
    """Per (unix second, token): data requests admitted (`served`) and refused with 429
    (`rejected`), so a test can check a client never pushed past its limit in any second."""

    def __init__(self) -> None:
        self._per_second: dict[tuple[int, str], list[int]] = {}  # -> [served, rejected]

    def clear(self) -> None:
        self._per_second.clear()

    def record(self, token: str, now: float, *, served: bool) -> None:
        second = int(now)
        entry = self._per_second.get((second, token))
        if entry is None:
            self._forget_before(second - PER_SECOND_HISTORY)
            entry = self._per_second[(second, token)] = [0, 0]
        entry[0 if served else 1] += 1

    def snapshot(self) -> dict[str, Any]:
        per_second = [
            {"second": second, "token": token, "count": served + rejected, "served": served,
             "rejected": rejected}
            for (second, token), (served, rejected) in sorted(self._per_second.items())
        ]  # fmt: skip
        overall: dict[int, int] = {}
        by_token: dict[str, int] = {}
        for (second, token), (served, _) in self._per_second.items():
            overall[second] = overall.get(second, 0) + served
            by_token[token] = max(by_token.get(token, 0), served)
        return {
            "per_second": per_second,
            "max_served_per_second": {
                "overall": max(overall.values(), default=0),
                "by_token": dict(sorted(by_token.items())),
            },
        }

    def _forget_before(self, second: int) -> None:
        stale = [key for key in self._per_second if key[0] < second]
        for key in stale:
            del self._per_second[key]
