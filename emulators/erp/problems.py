"""Error answers: `{"error": <short reason>, "detail": <what to do about it>, ...}`.

Routes raise `ApiProblem`; the handler in `app.py` renders it. One shape for every error, so a
client can log `detail` whatever went wrong.
"""

from __future__ import annotations

from typing import Any


class ApiProblem(Exception):
    def __init__(
        self,
        status_code: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.body: dict[str, Any] = {"error": error, "detail": detail, **extra}
        self.headers = headers


def bad_parameter(parameter: str, detail: str, **extra: Any) -> ApiProblem:
    """A 422 naming the query parameter at fault."""
    return ApiProblem(422, "invalid parameter", detail, parameter=parameter, **extra)
