"""One app factory for every emulator: lifespan, error answers, counting, faults, control routes.

A protocol describes itself with an `EmulatorApp` (its routers, how to name a call's kind, how
to render a refused call in its own error shape) and calls `build_app`. What it gets:

- a lifespan that builds its state object (with the client its webhooks leave by) and closes
  it;
- the common control routes (`scaffold.control`) before its own routes;
- a middleware that counts every public call by kind and status, applies the latency and
  dropped connections `FaultEngine.admit` decided, and logs calls when `log_requests` is on;
- `ApiError` (any status, JSON body or none, headers) rendered as is; `problem` and
  `problem_refusal` for the `{"error", "detail"}` shape of our own (non-provider) emulators;
  `credential_ok` for the `Authorization` header.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulators.scaffold.control import control_router
from emulators.scaffold.emulator import EmulatorBase
from emulators.scaffold.faults import AFTER_CALL, AfterCall, CallFaults, CallRefused, Refusal
from emulators.scaffold.settings import EmulatorSettings

Handler = Callable[[Request, Any], Awaitable[Response]]


class ApiError(Exception):
    """An error answer: status, JSON body (None: no body at all) and headers, sent as given."""

    def __init__(
        self,
        status_code: int,
        body: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(str((body or {}).get("detail", status_code)))
        self.status_code = status_code
        self.body = body
        self.headers = headers


def credential_ok(request: Request, schemes: tuple[str, ...], expected: str) -> bool:
    """`Authorization: <scheme> <credential>` with one of `schemes` (lower case) and, unless
    `expected` is empty (any credential will do), that credential."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() not in schemes or not credential:
        return False
    return not expected or hmac.compare_digest(credential.encode(), expected.encode())


def problem(
    status_code: int,
    error: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ApiError:
    """Our own emulators' error shape (ERP, pull client): `{"error", "detail", ...}`."""
    return ApiError(status_code, {"error": error, "detail": detail, **extra}, headers)


def problem_refusal(request: Request, refusal: Refusal) -> Response:
    """A refused call in `problem`'s shape: 429 with Retry-After, or 500 and 503 in turn."""
    if refusal.outcome == "rate_limited":
        seconds = max(1, math.ceil(refusal.retry_after or 1))
        body = {
            "error": "rate limited",
            "detail": f"injected by the emulator (rate_limits); retry in {seconds}s",
            "retry_after": seconds,
        }
        return JSONResponse(body, status_code=429, headers=refusal.headers())
    status = 500 if refusal.ordinal % 2 == 1 else 503  # a 503 says when to come back
    body = {"error": "server error", "detail": "injected by the emulator (server_errors)"}
    headers = {"retry-after": "1"} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


def problem_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own errors (unknown route, wrong method) in `problem`'s shape."""
    body = {"error": str(exc.detail).lower(), "detail": f"{request.method} {request.url.path}"}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


@dataclass(frozen=True)
class EmulatorApp:
    """What makes one emulator's app different from another's."""

    name: str  # the package, e.g. `emulators.replicate` (also its logger's name)
    title: str
    description: str
    faults: type[CallFaults]  # what `PUT /_emulator/faults` takes
    routers: Sequence[APIRouter]  # the protocol's own, after the common control routes
    classify: Callable[[str, str], str | None]  # (method, path) -> kind; None: not counted
    render_refusal: Callable[[Request, Refusal], Response]
    # Starlette's own errors (an unknown route, a wrong method) in the protocol's shape.
    http_error: Callable[[Request, StarletteHTTPException], Response] | None = None
    error_handlers: Mapping[type[Exception], Handler] = field(default_factory=dict)
    jobs: bool = False  # serve `GET /_emulator/jobs`


def build_app(
    spec: EmulatorApp,
    config: EmulatorSettings,
    state: Callable[[Any, httpx.AsyncClient], EmulatorBase[Any, Any]],
    *,
    webhook_timeout: float = 15.0,
) -> FastAPI:
    """A fresh emulator app; its state (`state(config, http)`) lives as long as its lifespan.

    `http` is the client webhooks leave by: no redirects (providers don't follow them) and no
    proxies from the environment, so deliveries go straight to the receiver.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            timeout=webhook_timeout, follow_redirects=False, trust_env=False
        ) as http:
            emulator = state(config, http)
            app.state.emulator = emulator
            await emulator.start()
            try:
                yield
            finally:
                await emulator.close()

    app = FastAPI(title=spec.title, description=spec.description, lifespan=lifespan)
    app.include_router(control_router(spec.faults, jobs=spec.jobs))
    for router in spec.routers:
        app.include_router(router)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        if exc.body is None:
            return Response(status_code=exc.status_code, headers=exc.headers)
        return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(CallRefused)
    async def _refused(request: Request, exc: CallRefused) -> Response:
        return spec.render_refusal(request, exc.refusal)

    if spec.http_error is not None:
        http_error = spec.http_error

        @app.exception_handler(StarletteHTTPException)
        async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
            return http_error(request, exc)

    for error, handler in spec.error_handlers.items():
        app.add_exception_handler(error, handler)

    app.add_middleware(
        CallMiddleware,
        classify=spec.classify,
        log=logging.getLogger(spec.name),
        log_requests=config.log_requests,
    )
    return app


class CallMiddleware:
    """Counts public calls, applies latency and dropped connections, logs calls if asked."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        classify: Callable[[str, str], str | None],
        log: logging.Logger,
        log_requests: bool,
    ) -> None:
        self.app = app
        self.classify = classify
        self.log = log
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None
        dropped = False

        async def send_answer(message: Message) -> None:
            nonlocal status, dropped
            if dropped:
                return  # the connection is "gone": the rest of the answer goes nowhere
            if message["type"] == "http.response.start":
                status = message["status"]
                after: AfterCall | None = scope.get(AFTER_CALL)
                if after is not None:
                    stats = scope["app"].state.emulator.stats
                    if after.latency_seconds > 0:
                        stats.count_fault("delayed")
                        await asyncio.sleep(after.latency_seconds)
                    if after.drop:
                        # The status line and headers leave, the body never does: the server
                        # closes the connection when the app returns an unfinished answer.
                        stats.count_fault("drop")
                        dropped = True
            await send(message)

        await self.app(scope, receive, send_answer)
        kind = self.classify(scope["method"], scope["path"])
        if kind is not None and status is not None:
            scope["app"].state.emulator.stats.record_response(kind, status)
        if self.log_requests:
            self.log.info("%s %s -> %s", scope["method"], scope["path"], status)
