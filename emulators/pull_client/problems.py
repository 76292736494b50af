"""Error answers: `{"error": <short reason>, "detail": <what to do about it>}` (or no body)."""

from __future__ import annotations


class ApiProblem(Exception):
    def __init__(self, status_code: int, error: str, detail: str, *, empty: bool = False) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.body = None if empty else {"error": error, "detail": detail}
