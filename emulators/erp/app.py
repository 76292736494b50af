"""The ERP emulator as a FastAPI app: `create_app()`, run by `python -m emulators.erp`."""

from __future__ import annotations

from fastapi import FastAPI

from emulators.erp import api, control
from emulators.erp.config import ErpEmulatorConfig
from emulators.erp.deps import classify
from emulators.erp.faults import Faults
from emulators.erp.state import ErpEmulator
from emulators.scaffold.app import EmulatorApp, build_app, problem_http_error, problem_refusal

SPEC = EmulatorApp(
    name="emulators.erp",
    title="ERP emulator",
    description="Six ERP reporting views, keyset-paged, with fault switches, for tests.",
    faults=Faults,
    routers=(api.router, control.router),
    classify=classify,
    render_refusal=problem_refusal,
    http_error=problem_http_error,
)


def create_app(config: ErpEmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator with no changed rows, faults or counters."""
    return build_app(SPEC, config or ErpEmulatorConfig(), lambda config, http: ErpEmulator(config))
