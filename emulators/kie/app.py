"""The KIE.ai emulator as a FastAPI app: `create_app()`, run by `python -m emulators.kie`."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from emulators.kie import api, control
from emulators.kie.config import EmulatorConfig
from emulators.kie.models import Faults, KieError
from emulators.kie.state import Emulator
from emulators.scaffold.app import EmulatorApp, build_app
from emulators.scaffold.faults import Refusal


def _answer(request: Request, exc: KieError) -> Response:
    emulator: Emulator = request.app.state.emulator
    emulator.codes[str(exc.code)] += 1
    return JSONResponse(exc.body(), status_code=exc.http_status, headers=exc.headers)


async def _kie_error(request: Request, exc: KieError) -> Response:
    return _answer(request, exc)


def _refused(request: Request, refusal: Refusal) -> Response:
    faults = refusal.faults
    assert isinstance(faults, Faults)
    if refusal.outcome == "server_error":
        return _answer(request, KieError(faults.server_error_code, faults=faults))
    return _answer(request, KieError(429, faults=faults, headers=refusal.headers()))


SPEC = EmulatorApp(
    name="emulators.kie",
    title="KIE.ai emulator",
    description="KIE.ai's market job API with signed callbacks and fault switches, for tests.",
    faults=Faults,
    routers=(api.router, api.files_router, control.router),
    classify=api.classify,
    render_refusal=_refused,
    error_handlers={KieError: _kie_error},
    jobs=True,
)


def create_app(config: EmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator; its tasks and callback client live exactly as long as the app's lifespan."""
    settings = config or EmulatorConfig()
    return build_app(SPEC, settings, Emulator, webhook_timeout=settings.callback_timeout_seconds)
