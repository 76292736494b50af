"""Errors the client raises: the API's own answer (`ApiError`) or no answer at all."""

from __future__ import annotations

from typing import Any

import httpx


class AutosyncError(Exception):
    """Anything the client raises."""


class ApiError(AutosyncError):
    """A 4xx/5xx answer: the API's `{"error": {"code", "message", "details"}}`, kept whole."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        retry_after: float | None = None
        try:
            retry_after = float(response.headers.get("retry-after", ""))
        except ValueError:
            pass
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            details = error.get("details")
            return cls(
                response.status_code,
                str(error.get("code") or "error"),
                error["message"],
                details if isinstance(details, dict) else {},
                retry_after,
            )
        text = response.text.strip()[:500] or response.reason_phrase
        return cls(response.status_code, "http_error", text, {}, retry_after)


class ApiUnreachable(AutosyncError):
    """The API could not be reached (refused, timed out, dropped)."""

    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(f"could not reach {url}: {type(cause).__name__}: {cause}")
        self.cause = cause
