"""Request-scoped access to the emulator, auth, model ids, and the error type routes raise."""

from __future__ import annotations

import hmac
import re
from typing import Annotated, Any

from fastapi import Depends, Request

from emulators.fal.models import UNAUTHORIZED
from emulators.fal.state import Emulator

# Apps under these namespaces have three-part ids: `workflows/<owner>/<app>`.
NAMESPACES = ("workflows", "comfy")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")


class ApiError(Exception):
    """An error answer in fal's shape; rendered by the handler installed in `app.py`."""

    def __init__(
        self, status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(str(body.get("detail", body)))
        self.status_code = status_code
        self.body = body
        self.headers = headers


def get_emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


EmulatorDep = Annotated[Emulator, Depends(get_emulator)]


def require_key(request: Request, emulator: EmulatorDep) -> None:
    """`Authorization: Key <key>`; any key is accepted when none is configured."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "key" or not key:
        raise ApiError(401, UNAUTHORIZED)
    expected = emulator.config.api_key
    if expected and not hmac.compare_digest(key.encode(), expected.encode()):
        raise ApiError(401, UNAUTHORIZED)


def base_url(request: Request, emulator: Emulator) -> str:
    """Where clients reach this emulator: the configured public URL or the request's own."""
    return emulator.config.public_url or str(request.base_url).rstrip("/")


def app_id_of(model_path: str) -> str | None:
    """`owner/app` of `owner/app[/subpath]` (namespaced: `ns/owner/app`); None if malformed."""
    parts = model_path.strip("/").split("/")
    if not all(_SEGMENT.match(part) for part in parts):
        return None
    size = 3 if parts[0] in NAMESPACES else 2
    if len(parts) < size:
        return None
    return "/".join(parts[:size])
