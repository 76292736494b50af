"""The fal.ai emulator as a FastAPI app: `create_app()`, run by `python -m emulators.fal`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulators.common import count_responses, webhook_client
from emulators.fal import api, control
from emulators.fal.config import EmulatorConfig
from emulators.fal.deps import ApiError, get_emulator
from emulators.fal.models import detail
from emulators.fal.state import Emulator
from emulators.fal.stats import classify

log = logging.getLogger("emulators.fal")


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator; its tasks and webhook client live exactly as long as the app's lifespan."""
    settings = config or EmulatorConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with webhook_client(settings.webhook_timeout_seconds) as http:
            emulator = Emulator(settings, http)
            app.state.emulator = emulator
            try:
                yield
            finally:
                await emulator.close()

    app = FastAPI(
        title="fal.ai emulator",
        description="fal's queue API with Ed25519-signed webhooks and fault switches, for tests.",
        lifespan=lifespan,
    )
    # Order matters: the submit route (`POST /{model_path:path}`) matches any path, so the
    # control, file and JWKS routes go first.
    app.include_router(control.router)
    app.include_router(api.public_router)
    app.include_router(api.queue_router)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            detail(str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    count_responses(
        app,
        lambda request: classify(request.method, request.url.path),
        lambda request, kind, code: get_emulator(request).stats.record_response(kind, code),
        log=log,
        log_requests=settings.log_requests,
    )

    return app
