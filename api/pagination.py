"""Opaque cursors for newest-first lists keyed by (created_at, id)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from fastapi import HTTPException, status

# The largest integer SQLite (and a PostgreSQL bigint) compares: past it a query parameter is
# not a bound but an overflow error.
MAX_DB_INT = 2**63 - 1


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, row_id = raw.split("|", 1)
        at = datetime.fromisoformat(created)
        if at.tzinfo is None:  # ours always carry one; a naive time cannot be compared
            raise ValueError("naive cursor time")
        return at, row_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "cursor is not valid: pass the next_cursor of a previous page as is",
        ) from None
