"""Request-scoped access to the emulator and the checks every data request goes through.

Order, as a client sees it: 401 (no or unknown token), 429 (over the token's rate), 500/503
(a server error burst), 403 (another company), 404 (unknown view), 500 (failing view), then
the route's own 404/422.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from emulators.erp.dataset import ViewData
from emulators.erp.problems import ApiProblem
from emulators.erp.ratelimit import retry_after_seconds
from emulators.erp.state import ErpEmulator
from emulators.erp.views import VIEW_NAMES, VIEWS


def get_emulator(request: Request) -> ErpEmulator:
    emulator: ErpEmulator = request.app.state.emulator
    return emulator


EmulatorDep = Annotated[ErpEmulator, Depends(get_emulator)]


@dataclass(frozen=True)
class Caller:
    token: str
    company: str


def authenticate(request: Request, emulator: EmulatorDep) -> Caller:
    """`Authorization: Bearer <token>` with a configured token, or 401."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    company = emulator.config.tokens.get(token) if scheme.lower() == "bearer" else None
    if company is None:
        raise ApiProblem(
            401,
            "unauthorized",
            "send Authorization: Bearer <token> with a token the ERP knows",
            headers={"www-authenticate": "Bearer"},
        )
    return Caller(token, company)


def admit(caller: Annotated[Caller, Depends(authenticate)], emulator: EmulatorDep) -> Caller:
    """Apply the token's rate limit and any server error burst."""
    now = time.time()
    wait = emulator.limiter.admit(caller.token, emulator.faults.faults.rate_limit_per_second, now)
    emulator.stats.record_admission(caller.token, now, served=wait is None)
    if wait is not None:
        seconds = retry_after_seconds(wait)
        raise ApiProblem(
            429,
            "rate limited",
            f"over {emulator.faults.faults.rate_limit_per_second} requests per second for "
            f"this token; retry in {seconds}s",
            headers={"retry-after": str(seconds)},
            retry_after=seconds,
        )
    status = emulator.faults.take_server_error()
    if status is not None:
        headers = {"retry-after": "1"} if status == 503 else None
        raise ApiProblem(
            status, "server error", "injected by the emulator (server_error_burst)", headers=headers
        )
    return caller


CallerDep = Annotated[Caller, Depends(admit)]


def view_for(emulator: ErpEmulator, caller: Caller, company: str, view: str) -> ViewData:
    """The company's view if this caller may read it and it works right now."""
    if company != caller.company:
        raise ApiProblem(
            403,
            "forbidden",
            f"this token may only read company {caller.company!r}, not {company!r}",
        )
    if view not in VIEWS:
        raise unknown_view(view)
    if view in emulator.faults.faults.failing_views:
        raise ApiProblem(500, "view failed", f"{view} failed (injected by the emulator)")
    return emulator.view(company, view)


def unknown_view(view: str) -> ApiProblem:
    return ApiProblem(
        404,
        "unknown view",
        f"no view {view!r}; known views: {', '.join(VIEW_NAMES)}",
        known_views=list(VIEW_NAMES),
    )
