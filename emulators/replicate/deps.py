"""Request-scoped access to the emulator, auth, and the error type routes raise."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request

from emulators.replicate.models import UNAUTHENTICATED
from emulators.replicate.state import Emulator


class ApiProblem(Exception):
    """An error answer in Replicate's shape; rendered by the handler installed in `app.py`."""

    def __init__(
        self, status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body.get("detail", ""))
        self.status_code = status_code
        self.body = body
        self.headers = headers


def get_emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


EmulatorDep = Annotated[Emulator, Depends(get_emulator)]


def require_token(request: Request, emulator: EmulatorDep) -> None:
    """`Authorization: Bearer <token>` (or the old `Token <token>`); any token if none is set."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "token") or not token:
        raise ApiProblem(401, UNAUTHENTICATED)
    expected = emulator.config.api_token
    if expected and not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiProblem(401, UNAUTHENTICATED)


def base_url(request: Request, emulator: Emulator) -> str:
    """Where clients reach this emulator: the configured public URL or the request's own."""
    return emulator.config.public_url or str(request.base_url).rstrip("/")
