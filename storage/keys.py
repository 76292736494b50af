"""Object keys: `{context}/{user_id}/{job_id}_{n}.{ext}` (seed 001), never escaping their prefix.

Thumbnails mirror the layout under `thumbnails/`: `thumbnails/{context}/{user_id}/{job_id}_{n}.webp`.

Every segment is checked, not cleaned: a user id or file name that is not plain ASCII letters,
digits, `_`, `-` and inner `.` is refused rather than rewritten, so two ids can never map to the
same key and nothing (`../`, `/abs`, NUL, `\\`, a fullwidth solidus, an RTL mark) slips through.
"""

from __future__ import annotations

import re

# fullmatch: `$` would also match before a trailing newline.
_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
CONTEXTS = frozenset({"generated", "edited", "upscaled", "videos", "trainings"})
THUMBNAILS = "thumbnails"
MAX_KEY_LENGTH = 1024
MAX_KEY_DEPTH = 8


def safe_part(value: str, what: str) -> str:
    """One path segment made only of ASCII letters, digits, `_`, `-`, `.` and no `..`."""
    if not isinstance(value, str) or not _SAFE_PART.fullmatch(value) or ".." in value:
        raise ValueError(f"{what} {value!r} can't be used in a storage key")
    return value


def output_key(context: str, user_id: str, job_id: str, index: int, ext: str) -> str:
    """Where output `index` of a job is stored."""
    return f"{_prefix(context, user_id)}/{_name(job_id, index, ext)}"


def thumbnail_key(context: str, user_id: str, job_id: str, index: int, ext: str = "webp") -> str:
    """Where the thumbnail of output `index` of a job is stored."""
    return f"{THUMBNAILS}/{_prefix(context, user_id)}/{_name(job_id, index, ext)}"


def check_key(key: str) -> str:
    """A key every backend accepts: 1 to MAX_KEY_DEPTH safe segments joined by `/`."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"storage key {key!r} is empty or too long")
    parts = key.split("/")
    if len(parts) > MAX_KEY_DEPTH:
        raise ValueError(f"storage key {key!r} is too deep")
    for part in parts:
        safe_part(part, f"segment of storage key {key!r}:")
    return key


def _prefix(context: str, user_id: str) -> str:
    if context not in CONTEXTS:
        raise ValueError(f"unknown storage context {context!r}")
    return f"{context}/{safe_part(user_id, 'user id')}"


def _name(job_id: str, index: int, ext: str) -> str:
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"output index {index!r} must be a non-negative integer")
    ext = safe_part(ext.lstrip("."), "extension")
    return f"{safe_part(job_id, 'job id')}_{index}.{ext}"
