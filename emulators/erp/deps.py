"""Request-scoped access to the emulator and the checks every data request goes through.

Order, as a client sees it: 401 (no or unknown token), 429 (over the token's rate), the
common call faults (429, 500/503, see `scaffold.faults`), 403 (another company), 404 (unknown
view), 500 (failing view), then the route's own 404/422.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from emulators.erp.dataset import ViewData
from emulators.erp.ratelimit import retry_after_seconds
from emulators.erp.state import ErpEmulator
from emulators.erp.views import VIEW_NAMES, VIEWS
from emulators.scaffold.app import ApiError, problem
from emulators.scaffold.emulator import state_of

EmulatorDep = Annotated[ErpEmulator, Depends(state_of(ErpEmulator))]


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
        raise problem(
            401,
            "unauthorized",
            "send Authorization: Bearer <token> with a token the ERP knows",
            headers={"www-authenticate": "Bearer"},
        )
    return Caller(token, company)


def classify(method: str, path: str) -> str | None:
    """The kind of a data request, or None for anything outside `/v1/`."""
    if not path.startswith("/v1/"):
        return None
    parts = path.strip("/").split("/")
    # v1 / companies / {company} / views / {view} [/ count | / {id}]
    if len(parts) < 5 or parts[1] != "companies" or parts[3] != "views":
        return "other"
    if len(parts) == 5:
        return "list"
    if len(parts) == 6:
        return "count" if parts[5] == "count" else "detail"
    return "other"


def admit(
    request: Request,
    caller: Annotated[Caller, Depends(authenticate)],
    emulator: EmulatorDep,
) -> Caller:
    """Apply the token's rate limit, then the common call faults."""
    now = time.time()
    limit = emulator.faults.global_faults.rate_limit_per_second
    wait = emulator.limiter.admit(caller.token, limit, now)
    emulator.admissions.record(caller.token, now, served=wait is None)
    if wait is not None:
        raise rate_limited(
            retry_after_seconds(wait),
            f"over {limit} requests per second for this token",
        )
    emulator.faults.admit(request, classify(request.method, request.url.path) or "other")
    return caller


def rate_limited(seconds: int, why: str) -> ApiError:
    return problem(
        429,
        "rate limited",
        f"{why}; retry in {seconds}s",
        headers={"retry-after": str(seconds)},
        retry_after=seconds,
    )


CallerDep = Annotated[Caller, Depends(admit)]


def view_for(emulator: ErpEmulator, caller: Caller, company: str, view: str) -> ViewData:
    """The company's view if this caller may read it and it works right now."""
    if company != caller.company:
        raise problem(
            403,
            "forbidden",
            f"this token may only read company {caller.company!r}, not {company!r}",
        )
    if view not in VIEWS:
        raise unknown_view(view)
    if view in emulator.faults.global_faults.failing_views:
        raise problem(500, "view failed", f"{view} failed (injected by the emulator)")
    return emulator.view(company, view)


def unknown_view(view: str) -> ApiError:
    return problem(
        404,
        "unknown view",
        f"no view {view!r}; known views: {', '.join(VIEW_NAMES)}",
        known_views=list(VIEW_NAMES),
    )
