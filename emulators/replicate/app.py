"""The Replicate emulator as a FastAPI app: `create_app()`, run by `python -m emulators.replicate`."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulators.replicate import api, control
from emulators.replicate.config import EmulatorConfig
from emulators.replicate.models import (
    NOT_FOUND,
    SERVER_ERROR_BODY,
    Faults,
    problem,
    rate_limit_body,
)
from emulators.replicate.parsing import ValidationFailed
from emulators.replicate.state import Emulator
from emulators.scaffold.app import EmulatorApp, build_app
from emulators.scaffold.faults import Refusal


def _refused(request: Request, refusal: Refusal) -> Response:
    if refusal.outcome == "server_error":
        return JSONResponse(SERVER_ERROR_BODY, status_code=500)
    # Whole seconds in the header: replicate-python only honours it when it `isdigit()`.
    seconds = refusal.retry_after if refusal.retry_after is not None else 1
    return JSONResponse(rate_limit_body(seconds), status_code=429, headers=refusal.headers())


async def _validation_failed(request: Request, exc: ValidationFailed) -> Response:
    return JSONResponse(exc.body(), status_code=422)


def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404:
        return JSONResponse(NOT_FOUND, status_code=404)
    body = problem(exc.status_code, str(exc.detail), str(exc.detail))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


SPEC = EmulatorApp(
    name="emulators.replicate",
    title="Replicate emulator",
    description="Replicate's HTTP API with signed webhooks and fault switches, for tests.",
    faults=Faults,
    routers=(api.router, api.files_router, control.router),
    classify=api.classify,
    render_refusal=_refused,
    http_error=_http_error,
    error_handlers={ValidationFailed: _validation_failed},
    jobs=True,
)


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator; its tasks and webhook client live exactly as long as the app's lifespan."""
    settings = config or EmulatorConfig()
    return build_app(SPEC, settings, Emulator, webhook_timeout=settings.webhook_timeout_seconds)
