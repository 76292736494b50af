"""What a pulled record is about: its payload's item id (first of the known keys that holds a
non-empty string or a whole number), else the record itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core.pull_store import PulledRecord


class Name(str):
    pass


class Number(int):
    pass


@pytest.mark.parametrize(
    "payload,key",
    [
        ({"pokemon_id": 25}, "25"),
        ({"pokemon_id": "pikachu"}, "pikachu"),
        ({"pokemon_id": Name("x")}, "x"),
        ({"pokemon_id": Number(7)}, "7"),
        ({"item_id": "a" * 200}, "a" * 128),
        ({"pokemon_id": "", "item_id": "q"}, "q"),
        ({"pokemon_id": 1.5, "item_id": "z"}, "z"),
        ({"pokemon_id": True}, "record:r1"),
        ({"pokemon_id": None}, "record:r1"),
        ({}, "record:r1"),
    ],
)
def test_the_item_a_record_is_about(payload: dict[str, Any], key: str) -> None:
    record = PulledRecord("r1", "u", "capture", payload, datetime.now(UTC))
    assert record.item_key == key
