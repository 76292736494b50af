"""Reading the API's one error shape in tests: `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

from typing import Any

import httpx


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of an error response (older `{"detail": …}` bodies are read too)."""
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return dict(body["error"])
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, dict):
        return {"code": detail.get("code"), "message": detail.get("message"), "details": detail}
    return {"code": None, "message": detail if isinstance(detail, str) else str(detail),
            "details": {}}  # fmt: skip


def error_message(response: httpx.Response) -> str:
    return str(error_of(response).get("message") or "")
