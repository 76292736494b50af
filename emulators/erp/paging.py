"""Filtered keyset pages and counts, visiting only the rows a filter can't decide by index.

Base days rise with the index (see `layout`), so for untouched rows each filter splits the
index line into rows surely kept (`sure`), rows surely dropped (outside `candidates`) and thin
bands of a few days' rows near its bounds that are checked one by one. Changed rows keep their
business date but have a new `updated_at`, so they are always checked themselves, and those
outside `candidates` are merged in from the change log. A page or a count thus costs about
its own size plus the bands, whether the view has 300 rows or 300,000.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

from emulators.erp.dataset import ViewData
from emulators.erp.filters import Filters


@dataclass(frozen=True)
class Plan:
    """Index ranges for one query; `sure` ⊆ `candidates` ⊆ `window`."""

    window: range  # rows whose business date may be in the date window
    candidates: range  # rows the filters may keep, judged by their untouched values
    sure: range  # rows every filter keeps, judged by their untouched values


def plan(data: ViewData, filters: Filters) -> Plan:
    layout = data.layout
    jitter = layout.jitter_days
    first = layout.first_index_from_day
    window_lo, window_hi = 0, data.rows
    sure_lo, sure_hi = 0, data.rows
    if filters.start_date is not None:
        day = (filters.start_date - layout.start).days
        window_lo, sure_lo = first(day - jitter), first(day)
    if filters.end_date is not None:
        day = (filters.end_date - layout.start).days
        window_hi, sure_hi = first(day + 1), first(day - jitter + 1)
    candidates_lo = window_lo
    if filters.updated_since_us is not None:
        day = layout.day_of(filters.updated_since_us)
        candidates_lo = max(candidates_lo, first(day - jitter))
        sure_lo = max(sure_lo, first(day + 1))
    return Plan(
        window=range(window_lo, max(window_lo, window_hi)),
        candidates=range(candidates_lo, max(candidates_lo, window_hi)),
        sure=range(sure_lo, max(sure_lo, sure_hi)),
    )


def keeps(data: ViewData, filters: Filters, index: int, *, untouched: bool = False) -> bool:
    """Whether the row passes every filter (as it was generated, when `untouched`)."""
    day, updated_us = data.layout.when(index)
    start, end = filters.start_date, filters.end_date
    if start is not None and day < (start - data.layout.start).days:
        return False
    if end is not None and day > (end - data.layout.start).days:
        return False
    if filters.updated_since_us is None:
        return True
    if not untouched and (change := data.changes.get(index)) is not None:
        updated_us = change.updated_us
    return updated_us > filters.updated_since_us


def matching(data: ViewData, filters: Filters, start: int = 0) -> Iterator[int]:
    """Indices of the rows that pass `filters`, ascending from `start`."""
    query = plan(data, filters)
    return heapq.merge(
        _in_candidates(data, filters, query, start), _changed_outside(data, filters, query, start)
    )


def page(data: ViewData, filters: Filters, start: int, limit: int) -> tuple[list[int], bool]:
    """Up to `limit` matching indices from `start`, and whether more follow."""
    found = list(islice(matching(data, filters, start), limit + 1))
    return found[:limit], len(found) > limit


def count(data: ViewData, filters: Filters) -> int:
    """How many rows pass `filters`, without generating the rows surely kept."""
    query = plan(data, filters)
    sure, candidates = query.sure, query.candidates
    # Candidates outside `sure` (the bands) are judged one by one as generated...
    bands: tuple[range, ...]
    if sure:
        bands = (range(candidates.start, sure.start), range(sure.stop, candidates.stop))
        total = len(sure)
    else:
        bands, total = (candidates,), 0
    for band in bands:
        total += sum(1 for i in band if keeps(data, filters, i, untouched=True))
    # ...then changed rows corrected from how they were generated to how they are now.
    for index in data.changes.indices_in(query.window.start, query.window.stop):
        if index in sure:
            was = True
        elif index in candidates:
            was = keeps(data, filters, index, untouched=True)
        else:
            was = False
        total += keeps(data, filters, index) - was
    return total


def _in_candidates(data: ViewData, filters: Filters, query: Plan, start: int) -> Iterator[int]:
    sure, changes = query.sure, data.changes
    for index in range(max(start, query.candidates.start), query.candidates.stop):
        if (index in sure and index not in changes) or keeps(data, filters, index):
            yield index


def _changed_outside(data: ViewData, filters: Filters, query: Plan, start: int) -> Iterator[int]:
    """Changed rows the candidates leave out, which only a new `updated_at` can bring in."""
    if filters.updated_since_us is None:
        return
    for index in data.changes.indices_in(max(start, query.window.start), query.window.stop):
        if index not in query.candidates and keeps(data, filters, index):
            yield index
