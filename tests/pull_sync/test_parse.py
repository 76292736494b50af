"""How a sync-data answer's timestamps become the stored text: read from the client's own text
when it is already UTC with microseconds, from the parsed datetime otherwise; the same text
either way, on both databases."""

from __future__ import annotations

import orjson
import pytest

from activities.pull_sync import BadAnswer, parse_sync_data
from core.pull_store import _record_stamp, _stamp


def one(stamp: str) -> bytes:
    record = {"id": "r1", "user_id": "u", "action": "capture", "payload": {}, "timestamp": stamp}
    return orjson.dumps({"records": [record], "pending": 1})


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-11-30T19:28:52.123456+00:00", "2026-11-30 19:28:52.123456"),
        ("2026-11-30T19:28:52.123456Z", "2026-11-30 19:28:52.123456"),
        # 27 characters like the `Z` shape, but a short fraction and an offset.
        ("2026-11-30T19:28:52.1+00:00", "2026-11-30 19:28:52.100000"),
        ("2026-11-30T19:28:52.123456-00:00", "2026-11-30 19:28:52.123456"),
        ("2026-11-30T21:28:52.123456+02:00", "2026-11-30 19:28:52.123456"),
        ("2026-11-30T19:28:52Z", "2026-11-30 19:28:52.000000"),
    ],
)
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_timestamp_is_stored_as_utc_whatever_its_spelling(
    sent: str, stored: str, dialect: str
) -> None:
    [record], pending = parse_sync_data(one(sent), user_id="u", max_records=10)
    assert pending == 1
    expected = stored if dialect == "sqlite" else stored + "+00:00"
    assert _record_stamp(record, dialect) == expected == _stamp(record.timestamp, dialect)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (one("2026-13-30T19:28:52.123456+00:00"), "wrong shape"),  # no 13th month
        (one("yesterday"), "wrong shape"),
        (b'{"records": [{"id": "x", ', "not valid JSON"),
        (orjson.dumps({"records": [{"id": "r1", "user_id": "v", "action": "capture",
                                    "timestamp": "2026-11-30T19:28:52Z"}]}), "not 'u'"),
    ],
)  # fmt: skip
def test_a_bad_answer_is_refused_whole(body: bytes, error: str) -> None:
    with pytest.raises(BadAnswer, match=error):
        parse_sync_data(body, user_id="u", max_records=10)
