"""Per-token rate limiting with a sliding window, strict enough to promise per-second maxima.

With a limit of `r` ≥ 1 requests a second, at most `floor(r)` requests are admitted in any
window of one second; below 1, one request in any window of `1/r` seconds. A sliding window
(rather than a bucket that refills continuously) is what lets the stats promise that no
calendar second ever saw more than the limit served, which is what a client's own limiter is
tested against.
"""

from __future__ import annotations

import math
from collections import deque


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
