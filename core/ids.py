"""The ids that arrive in URLs and bodies, checked by one pattern each before any lookup.

- Job ids are ours (hex uuids): letters, digits, `_` and `-` (no dots: a job id is a path
  segment of our output URLs and a suffix of its workflow id).
- Names that callers choose (a company, a user, a project, a project's node) may hold dots too.

Both start with a letter or digit and are at most 64 characters long: they reach log lines,
queries, Temporal workflow and schedule ids.
"""

from __future__ import annotations

import re

# Unanchored, to be part of larger patterns (an output's path).
JOB_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
JOB_ID_PATTERN = rf"^{JOB_ID}$"
NAME_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

_JOB_ID = re.compile(JOB_ID_PATTERN)


def valid_job_id(value: str | None) -> bool:
    return value is not None and _JOB_ID.fullmatch(value) is not None
