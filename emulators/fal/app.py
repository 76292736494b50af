"""The fal.ai emulator as a FastAPI app: `create_app()`, run by `python -m emulators.fal`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
        # No redirects and no proxies from the environment: webhooks go straight to the
        # receiver, usually on loopback.
        async with httpx.AsyncClient(
            timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False
        ) as http:
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

    @app.middleware("http")
    async def _count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        kind = classify(request.method, request.url.path)
        if kind is not None:
            get_emulator(request).stats.record_response(kind, response.status_code)
        if settings.log_requests:
            log.info("%s %s -> %s", request.method, request.url.path, response.status_code)
        return response

    return app
