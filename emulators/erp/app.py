"""The ERP emulator as a FastAPI app: `create_app()`, run by `python -m emulators.erp`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulators.erp import api, control
from emulators.erp.config import ErpEmulatorConfig
from emulators.erp.deps import get_emulator
from emulators.erp.problems import ApiProblem
from emulators.erp.state import ErpEmulator
from emulators.erp.stats import classify

log = logging.getLogger("emulators.erp")


def create_app(config: ErpEmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator with no changed rows, faults or counters."""
    settings = config or ErpEmulatorConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.emulator = ErpEmulator(settings)
        yield

    app = FastAPI(
        title="ERP emulator",
        description="Six ERP reporting views, keyset-paged, with fault switches, for tests.",
        lifespan=lifespan,
    )
    app.include_router(api.router)
    app.include_router(control.router)

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": str(exc.detail).lower(), "detail": f"{request.method} {request.url.path}"}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.middleware("http")
    async def _count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        kind = classify(request.url.path)
        if kind is not None:
            get_emulator(request).stats.record_response(kind, response.status_code)
        if settings.log_requests:
            log.info("%s %s -> %s", request.method, request.url.path, response.status_code)
        return response

    return app
