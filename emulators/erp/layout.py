"""Where each row sits in time, computed from its index alone (nothing is precomputed).

Row `i` of a view of `n` rows has a *base day* `i * days // n`, so base days rise with the id
and the rows of any day span a contiguous id range that `first_index_from_day` finds by
arithmetic. Its business date is the base day plus a hashed jitter of up to `MAX_JITTER_DAYS`
(ids are not strictly in date order, as in a real ERP), and its untouched `updated_at` falls
within business hours of that date, and never after `not_after_us` (the emulator's start: a
row of today was not updated later today yet). Filters use both facts to visit only the rows
near a boundary one by one; every other row is in or out by its index.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, date, datetime, timedelta

DAY_US = 86_400_000_000
SECOND_US = 1_000_000
MAX_JITTER_DAYS = 3
OPENING_SECOND = 7 * 3600  # untouched rows were last written between 07:00 and 21:00 UTC
WORKDAY_SECONDS = 14 * 3600
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float on the way)."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def format_us(us: int) -> str:
    """ISO-8601 UTC with microseconds and a `Z`, the one shape every timestamp is served in."""
    return (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_us() -> int:
    return time.time_ns() // 1000


class RowLayout:
    """Business day and untouched `updated_at` of every row of one company's view."""

    def __init__(
        self,
        *,
        seed: int,
        company: str,
        view: str,
        rows: int,
        start: date,
        days: int,
        not_after_us: int | None = None,
    ) -> None:
        self.rows = rows
        self.not_after_us = not_after_us
        self.days = days
        self.start = start
        self.jitter_days = min(MAX_JITTER_DAYS, days - 1)
        self.start_us = epoch_us(datetime(start.year, start.month, start.day, tzinfo=UTC))
        # Unit separators keep ("a", "bc") and ("ab", "c") apart.
        self._salt = f"{seed}\x1f{company}\x1f{view}\x1f".encode()

    def digest(self, index: int, purpose: str) -> bytes:
        """16 bytes that only (seed, company, view, index, purpose) decide."""
        key = self._salt + f"{index}\x1f{purpose}".encode()
        return hashlib.blake2b(key, digest_size=16).digest()

    def base_day(self, index: int) -> int:
        return index * self.days // self.rows

    def first_index_from_day(self, day: int) -> int:
        """The first index whose base day is `day` or later (`rows` when there is none)."""
        if day <= 0:
            return 0
        return min(self.rows, -(-day * self.rows // self.days))

    def when(self, index: int) -> tuple[int, int]:
        """(business day as an offset from `start`, untouched `updated_at` in epoch µs)."""
        mix = int.from_bytes(self.digest(index, "when")[:8], "big")
        day = min(self.days - 1, self.base_day(index) + mix % (self.jitter_days + 1))
        second = OPENING_SECOND + (mix >> 8) % WORKDAY_SECONDS
        updated = self.start_us + day * DAY_US + second * SECOND_US
        if self.not_after_us is not None and updated > self.not_after_us:
            # Still on its business day: the window ends on the day the emulator started.
            updated = max(self.not_after_us, self.start_us + day * DAY_US)
        return day, updated

    def business_date(self, index: int) -> date:
        return self.start + timedelta(days=self.when(index)[0])

    def day_of(self, moment_us: int) -> int:
        """The day offset from `start` that contains `moment_us` (negative before the range)."""
        return (moment_us - self.start_us) // DAY_US
