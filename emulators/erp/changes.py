"""Rows changed since startup: the only row state the emulator stores.

A change is a revision number (which the generators turn into new field values) and the moment
it happened (the row's new `updated_at`). Everything else about a row is recomputed on read.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Change:
    revision: int
    updated_us: int


class ViewChanges:
    """The changed rows of one company's view, by index, with an index order kept on demand."""

    def __init__(self) -> None:
        self._by_index: dict[int, Change] = {}
        self._ordered: list[int] = []
        self._ordered_stale = False

    def __len__(self) -> int:
        return len(self._by_index)

    def __contains__(self, index: int) -> bool:
        return index in self._by_index

    def get(self, index: int) -> Change | None:
        return self._by_index.get(index)

    def touch(self, indices: Iterable[int], at_us: int) -> None:
        """Give each row its next revision, last changed at `at_us`."""
        for index in indices:
            previous = self._by_index.get(index)
            if previous is None:
                self._ordered_stale = True
            revision = 1 if previous is None else previous.revision + 1
            self._by_index[index] = Change(revision, at_us)

    def indices_in(self, start: int, stop: int) -> list[int]:
        """Changed indices in [start, stop), ascending."""
        if self._ordered_stale:
            # Re-sorting once per batch of new rows beats an insort per row for bulk touches.
            self._ordered = sorted(self._by_index)
            self._ordered_stale = False
        lo = bisect.bisect_left(self._ordered, start)
        hi = bisect.bisect_left(self._ordered, stop, lo)
        return self._ordered[lo:hi]


class ChangeLog:
    """Changed rows of every (company, view)."""

    def __init__(self) -> None:
        self._views: dict[tuple[str, str], ViewChanges] = {}

    def of(self, company: str, view: str) -> ViewChanges:
        return self._views.setdefault((company, view), ViewChanges())

    def reset(self) -> None:
        self._views.clear()
