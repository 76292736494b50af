"""The KIE.ai emulator as a FastAPI app: `create_app()`, run by `python -m emulators.kie`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from emulators.kie import api, control
from emulators.kie.config import EmulatorConfig
from emulators.kie.deps import KieError, get_emulator
from emulators.kie.state import Emulator
from emulators.kie.stats import classify

log = logging.getLogger("emulators.kie")


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator; its tasks and callback client live exactly as long as the app's lifespan."""
    settings = config or EmulatorConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No redirects and no proxies from the environment: callbacks go straight to the
        # receiver, usually on loopback.
        async with httpx.AsyncClient(
            timeout=settings.callback_timeout_seconds, follow_redirects=False, trust_env=False
        ) as http:
            emulator = Emulator(settings, http)
            app.state.emulator = emulator
            try:
                yield
            finally:
                await emulator.close()

    app = FastAPI(
        title="KIE.ai emulator",
        description="KIE.ai's market job API with signed callbacks and fault switches, for tests.",
        lifespan=lifespan,
    )
    app.include_router(api.router)
    app.include_router(api.files_router)
    app.include_router(control.router)

    @app.exception_handler(KieError)
    async def _kie_error(request: Request, exc: KieError) -> JSONResponse:
        get_emulator(request).stats.codes[str(exc.code)] += 1
        return JSONResponse(exc.body(), status_code=exc.http_status, headers=exc.headers)

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
