"""Request-scoped access to the emulator, auth, and the error type routes raise."""

from __future__ import annotations

import hmac
import math
from typing import Annotated, Any

from fastapi import Depends, Request

from emulators.kie.faults import CallFault
from emulators.kie.models import CODE_MESSAGES, Faults, envelope
from emulators.kie.state import Emulator


class KieError(Exception):
    """A body-level error answer (`{"code": N, "msg": …, "data": null}`), rendered in `app.py`.

    The HTTP status is 200, as KIE sends it, unless the faults in force mirror the code.
    """

    def __init__(
        self,
        code: int,
        msg: str | None = None,
        *,
        faults: Faults | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.msg = msg or CODE_MESSAGES.get(code, f"error {code}")
        super().__init__(self.msg)
        self.http_status = code if faults is not None and faults.http_status_mirrors_code else 200
        self.headers = headers

    @classmethod
    def from_fault(cls, fault: CallFault, faults: Faults) -> KieError:
        headers = None
        if fault.code == 429 and fault.retry_after is not None:
            headers = {"retry-after": str(math.ceil(fault.retry_after))}
        return cls(fault.code, faults=faults, headers=headers)

    def body(self) -> dict[str, Any]:
        return envelope(self.code, self.msg)


def get_emulator(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator


EmulatorDep = Annotated[Emulator, Depends(get_emulator)]


def require_key(request: Request, emulator: EmulatorDep) -> None:
    """`Authorization: Bearer <key>`; any key if none is configured. Failing is code 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    expected = emulator.config.api_key
    if (
        scheme.lower() != "bearer"
        or not token
        or (expected and not hmac.compare_digest(token.encode(), expected.encode()))
    ):
        raise KieError(401, faults=emulator.faults.global_faults)


def base_url(request: Request, emulator: Emulator) -> str:
    """Where clients reach this emulator: the configured public URL or the request's own."""
    return emulator.config.public_url or str(request.base_url).rstrip("/")
