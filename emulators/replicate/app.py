"""The Replicate emulator as a FastAPI app: `create_app()`, run by `python -m emulators.replicate`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulators.common import count_responses, webhook_client
from emulators.replicate import api, control
from emulators.replicate.config import EmulatorConfig
from emulators.replicate.deps import ApiProblem, get_emulator
from emulators.replicate.models import NOT_FOUND, problem
from emulators.replicate.parsing import ValidationFailed
from emulators.replicate.state import Emulator
from emulators.replicate.stats import classify

log = logging.getLogger("emulators.replicate")


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator; its tasks and webhook client live exactly as long as the app's lifespan."""
    settings = config or EmulatorConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with webhook_client(settings.webhook_timeout_seconds) as http:
            emulator = Emulator(settings, http)
            app.state.emulator = emulator
            await emulator.start()
            try:
                yield
            finally:
                await emulator.close()

    app = FastAPI(
        title="Replicate emulator",
        description="Replicate's HTTP API with signed webhooks and fault switches, for tests.",
        lifespan=lifespan,
    )
    app.include_router(api.router)
    app.include_router(api.files_router)
    app.include_router(control.router)

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ValidationFailed)
    async def _validation_failed(request: Request, exc: ValidationFailed) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return JSONResponse(NOT_FOUND, status_code=404)
        body = problem(exc.status_code, str(exc.detail), str(exc.detail))
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    count_responses(
        app,
        lambda request: classify(request.method, request.url.path),
        lambda request, kind, code: get_emulator(request).stats.record_response(kind, code),
        log=log,
        log_requests=settings.log_requests,
    )

    return app
