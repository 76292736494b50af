"""Object keys: `{context}/{user_id}/{job_id}_{n}.{ext}` (seed 001), never escaping their prefix."""

from __future__ import annotations

import re

_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CONTEXTS = frozenset({"generated", "edited", "upscaled", "videos"})


def safe_part(value: str, what: str) -> str:
    """One path segment made only of ASCII letters, digits, `_`, `-`, `.` and no `..`."""
    if not _SAFE_PART.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} can't be used in a storage key")
    return value


def output_key(context: str, user_id: str, job_id: str, index: int, ext: str) -> str:
    if context not in CONTEXTS:
        raise ValueError(f"unknown storage context {context!r}")
    ext = safe_part(ext.lstrip("."), "extension")
    return f"{context}/{safe_part(user_id, 'user id')}/{safe_part(job_id, 'job id')}_{index}.{ext}"
