"""Global fault switches (`PUT /_emulator/faults`) and the state they count down.

All of them hit data requests only (`/v1/...`); the control routes always answer.
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field, field_validator

from emulators.erp.layout import RowLayout
from emulators.erp.views import VIEW_NAMES

MUTATED_PER_PAGE = 3


class Faults(BaseModel):
    """Defaults mean "behave like a healthy ERP"."""

    model_config = ConfigDict(extra="forbid")

    # Per token; over it a data request gets 429 with Retry-After (see ratelimit.py).
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    # The next N data requests fail, alternately 500 and 503 (503 with Retry-After: 1).
    server_error_burst: int = Field(default=0, ge=0)
    # Every listing page is held this long before it is sent.
    slow_page_seconds: float = Field(default=0, ge=0, le=300)
    # These views answer every request (list, count, detail) with a 500.
    failing_views: list[str] = Field(default_factory=list)
    # After each listing page, rows further on in id order change (new updated_at and field).
    mutate_between_pages: bool = False

    @field_validator("failing_views")
    @classmethod
    def _known_views(cls, views: list[str]) -> list[str]:
        unknown = [view for view in views if view not in VIEW_NAMES]
        if unknown:
            raise ValueError(f"unknown views {unknown}; known views: {', '.join(VIEW_NAMES)}")
        return views


class FaultBook:
    def __init__(self) -> None:
        self.faults = Faults()
        self._burst_served = 0

    def replace(self, faults: Faults) -> None:
        self.faults = faults
        self._burst_served = 0

    def reset(self) -> None:
        self.replace(Faults())

    def take_server_error(self) -> int | None:
        """The status this request fails with if a burst is on (counting it down), else None."""
        if self.faults.server_error_burst <= 0:
            return None
        self.faults.server_error_burst -= 1
        self._burst_served += 1
        return 500 if self._burst_served % 2 == 1 else 503


def rows_to_mutate(layout: RowLayout, last_served: int, stop: int) -> list[int]:
    """Rows after `last_served` (and before `stop`) that change once its page is out.

    Always the very next row, so the following page holds a changed row, plus a couple further
    on; chosen by hash, so a repeated walk changes the same rows again.
    """
    first = last_served + 1
    if first >= stop:
        return []
    rng = random.Random(int.from_bytes(layout.digest(last_served, "mutate")))
    chosen = {first}
    for _ in range(MUTATED_PER_PAGE - 1):
        chosen.add(rng.randrange(first, stop))
    return sorted(chosen)
