"""Error answers: `{"error": <short reason>, "detail": <what to do about it>, ...}`.

Routes raise what the scaffold's `problem` makes; one shape for every error, so a client can
log `detail` whatever went wrong.
"""

from __future__ import annotations

from typing import Any

from emulators.scaffold.app import ApiError, problem


def bad_parameter(parameter: str, detail: str, **extra: Any) -> ApiError:
    """A 422 naming the query parameter at fault."""
    return problem(422, "invalid parameter", detail, parameter=parameter, **extra)
