"""Query parameters of the data routes, parsed by hand so each 422 says what was expected.

FastAPI's own validation would answer with a generic list of errors; a sync client author
debugging a 422 wants "start_date must be YYYY-MM-DD, got '01/02/2024'".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

from emulators.erp.layout import epoch_us
from emulators.erp.problems import bad_parameter
from emulators.erp.views import ViewSpec

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_START = re.compile(r"\d{4}-\d{2}-\d{2}([T ]|$)")


@dataclass(frozen=True)
class Filters:
    """Business date window (inclusive) and `updated_at > updated_since`; None = no bound."""

    start_date: date | None = None
    end_date: date | None = None
    updated_since_us: int | None = None


def parse_filters(
    start_date: str | None, end_date: str | None, updated_since: str | None
) -> Filters:
    start = _parse_date("start_date", start_date)
    end = _parse_date("end_date", end_date)
    if start is not None and end is not None and end < start:
        raise bad_parameter(
            "end_date", f"end_date ({end.isoformat()}) is before start_date ({start.isoformat()})"
        )
    since = None if updated_since is None else epoch_us(parse_datetime(updated_since))
    return Filters(start, end, since)


def parse_datetime(raw: str) -> datetime:
    """ISO-8601 with `Z` or an offset; a naive value is taken as UTC."""
    # An unencoded `+` in a query string arrives as a space: "…T10:00:00 00:00".
    value = raw.strip()
    if re.search(r"T\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}:?\d{2}$", value):
        value = value[: value.rindex(" ")] + "+" + value[value.rindex(" ") + 1 :]
    try:
        if not _DATETIME_START.match(value):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise bad_parameter(
            "updated_since",
            "updated_since must be an ISO-8601 datetime such as 2024-01-31T12:00:00Z "
            f"(URL-encode a '+' offset), got {raw!r}",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_limit(raw: str | None, *, default: int, maximum: int) -> int:
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise bad_parameter(
            "limit",
            f"limit must be an integer from 1 to {maximum} (the maximum page size), got {raw!r}",
            max_page_size=maximum,
        )
    return limit


def parse_after(raw: str | None, spec: ViewSpec) -> int:
    """The first index a page may hold: just past the row `after` names (0 without a cursor)."""
    if raw is None or raw == "":
        return 0
    index = spec.index_of(raw)
    if index is None:
        raise bad_parameter(
            "after",
            f"after must be a next_cursor this view returned (an id such as "
            f"{spec.row_id(122)}), got {raw!r}",
        )
    return index + 1


def _parse_date(parameter: str, raw: str | None) -> date | None:
    if raw is None:
        return None
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_parameter(
            parameter, f"{parameter} must be a date in YYYY-MM-DD format, got {raw!r}"
        ) from None
