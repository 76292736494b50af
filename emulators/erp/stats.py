"""Counters served by `GET /_emulator/stats`.

Besides totals by endpoint kind and status, it keeps per (unix second, token) how many data
requests were admitted (`served`) and refused with 429 (`rejected`), so a test can check that
a client never pushed the emulator past its rate limit in any second.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

# Data request kinds; control routes (`/_emulator/...`) are not counted.
REQUEST_KINDS = ("list", "count", "detail", "other")
# Per-second entries are kept this long, so a long-running dev emulator stays small.
PER_SECOND_HISTORY = 3600


class Stats:
    def __init__(self) -> None:
        self._responses: Counter[tuple[str, int]] = Counter()
        self._per_second: dict[tuple[int, str], list[int]] = {}  # -> [served, rejected]

    def clear(self) -> None:
        self._responses.clear()
        self._per_second.clear()

    def record_response(self, kind: str, status_code: int) -> None:
        self._responses[(kind, status_code)] += 1

    def record_admission(self, token: str, now: float, *, served: bool) -> None:
        second = int(now)
        entry = self._per_second.get((second, token))
        if entry is None:
            self._forget_before(second - PER_SECOND_HISTORY)
            entry = self._per_second[(second, token)] = [0, 0]
        entry[0 if served else 1] += 1

    def snapshot(self) -> dict[str, Any]:
        by_kind: dict[str, dict[str, Any]] = {}
        by_status: Counter[str] = Counter()
        for kind in REQUEST_KINDS:
            statuses = {
                str(status): n for (k, status), n in sorted(self._responses.items()) if k == kind
            }
            by_kind[kind] = {"total": sum(statuses.values()), "by_status": statuses}
            by_status.update(statuses)
        per_second = [
            {"second": second, "token": token, "count": served + rejected, "served": served,
             "rejected": rejected}
            for (second, token), (served, rejected) in sorted(self._per_second.items())
        ]  # fmt: skip
        overall: Counter[int] = Counter()
        by_token: dict[str, int] = {}
        for (second, token), (served, _) in self._per_second.items():
            overall[second] += served
            by_token[token] = max(by_token.get(token, 0), served)
        return {
            "requests": {
                "total": sum(by_status.values()),
                "by_kind": by_kind,
                "by_status": dict(sorted(by_status.items())),
            },
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


def classify(path: str) -> str | None:
    """The kind of a data request, or None for anything outside `/v1/`."""
    if not path.startswith("/v1/"):
        return None
    parts = path.strip("/").split("/")
    # v1 / companies / {company} / views / {view} [/ count | / {id}]
    if len(parts) < 5 or parts[1] != "companies" or parts[3] != "views":
        return "other"
    if len(parts) == 5:
        return "list"
    if len(parts) == 6:
        return "count" if parts[5] == "count" else "detail"
    return "other"
