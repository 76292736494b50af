"""Global fault switches (`PUT /_emulator/faults`); the scaffold's engine counts them down.

All of them hit data requests only (`/v1/...`); the control routes always answer.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field, field_validator

from emulators.erp.layout import RowLayout
from emulators.erp.views import VIEW_NAMES
from emulators.scaffold.faults import CallFaults

MUTATED_PER_PAGE = 3


# The calls the call switches can hit (kinds of `classify` in `api.py`): every data request.
FaultTarget = Literal["list", "count", "detail"]
_DATA_CALLS: list[FaultTarget] = ["list", "count", "detail"]


class Faults(CallFaults):
    """The common call switches (`scaffold.faults`; `server_errors` answer 500 and 503 in
    turn, 503 with Retry-After: 1) and the ERP's own. Defaults mean "a healthy ERP"."""

    errors_on: list[FaultTarget] = Field(default_factory=lambda: _DATA_CALLS.copy())
    # Per token; over it a data request gets 429 with Retry-After (see ratelimit.py).
    rate_limit_per_second: float | None = Field(default=None, gt=0)
    # Every listing page is held this long before it is sent.
    slow_page_seconds: float = Field(default=0, ge=0, le=300)
    # These views answer every request (list, count, detail) with a 500.
    failing_views: list[str] = Field(default_factory=list)
    # After each listing page, rows further on in id order change (new updated_at and field).
    mutate_between_pages: bool = False
    # Each listing page leaves out its last rows (this many), though `next_cursor` goes past
    # them and `total` still counts them: a lossy upstream, for reconciliation to catch.
    drop_rows_per_page: int = Field(default=0, ge=0)

    @field_validator("failing_views")
    @classmethod
    def _known_views(cls, views: list[str]) -> list[str]:
        unknown = [view for view in views if view not in VIEW_NAMES]
        if unknown:
            raise ValueError(f"unknown views {unknown}; known views: {', '.join(VIEW_NAMES)}")
        return views


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
