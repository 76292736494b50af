"""The pull-client emulator as a FastAPI app: `create_app()`, run by `python -m emulators.pull_client`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulators.pull_client import api, control
from emulators.pull_client.config import PullClientEmulatorConfig
from emulators.pull_client.problems import ApiProblem
from emulators.pull_client.state import PullClientEmulator

log = logging.getLogger("emulators.pull_client")


def create_app(config: PullClientEmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator: the `default` identity with its seed records, no faults."""
    settings = config or PullClientEmulatorConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.emulator = PullClientEmulator(settings)
        yield

    app = FastAPI(
        title="Pull-sync client emulator",
        description="Many pull-sync clients (seed 004) in one process, with fault switches.",
        lifespan=lifespan,
    )
    app.include_router(api.router)
    app.include_router(control.router)

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> Response:
        if exc.body is None:
            return Response(status_code=exc.status_code)
        return JSONResponse(exc.body, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {"error": str(exc.detail).lower(), "detail": f"{request.method} {request.url.path}"}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    if settings.log_requests:

        @app.middleware("http")
        async def _log(request: Request, call_next):  # type: ignore[no-untyped-def]
            response = await call_next(request)
            log.info("%s %s -> %s", request.method, request.url.path, response.status_code)
            return response

    return app
