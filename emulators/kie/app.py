"""The KIE.ai emulator as a FastAPI app: `create_app()`, run by `python -m emulators.kie`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from emulators.common import count_responses, webhook_client
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
        async with webhook_client(settings.callback_timeout_seconds) as http:
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

    count_responses(
        app,
        lambda request: classify(request.url.path),
        lambda request, kind, code: get_emulator(request).stats.record_response(kind, code),
        log=log,
        log_requests=settings.log_requests,
    )

    return app
