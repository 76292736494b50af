"""The fal.ai emulator as a FastAPI app: `create_app()`, run by `python -m emulators.fal`."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulators.fal import api, control
from emulators.fal.config import EmulatorConfig
from emulators.fal.models import RATE_LIMIT_ERROR_TYPE, SERVER_ERROR, Faults, detail
from emulators.fal.state import Emulator
from emulators.scaffold.app import EmulatorApp, build_app
from emulators.scaffold.faults import Refusal


def _refused(request: Request, refusal: Refusal) -> Response:
    if refusal.outcome == "server_error":
        return JSONResponse(SERVER_ERROR, status_code=500)
    body = detail("Rate limit exceeded, retry later", RATE_LIMIT_ERROR_TYPE)
    headers = {"x-fal-error-type": RATE_LIMIT_ERROR_TYPE, **(refusal.headers() or {})}
    return JSONResponse(body, status_code=429, headers=headers)


def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return JSONResponse(detail(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


SPEC = EmulatorApp(
    name="emulators.fal",
    title="fal.ai emulator",
    description="fal's queue API with Ed25519-signed webhooks and fault switches, for tests.",
    faults=Faults,
    # Order matters: the submit route (`POST /{model_path:path}`) matches any path, so the
    # control, file and JWKS routes go first.
    routers=(control.router, api.public_router, api.queue_router),
    classify=api.classify,
    render_refusal=_refused,
    http_error=_http_error,
    jobs=True,
)


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator; its tasks and webhook client live exactly as long as the app's lifespan."""
    settings = config or EmulatorConfig()
    return build_app(SPEC, settings, Emulator, webhook_timeout=settings.webhook_timeout_seconds)
