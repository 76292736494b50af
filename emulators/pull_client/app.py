"""The pull-client emulator as a FastAPI app: `create_app()`, run by `python -m emulators.pull_client`."""

from __future__ import annotations

from fastapi import FastAPI

from emulators.pull_client import api, control
from emulators.pull_client.config import PullClientEmulatorConfig
from emulators.pull_client.faults import ClientCalls
from emulators.pull_client.state import PullClientEmulator
from emulators.scaffold.app import EmulatorApp, build_app, problem_http_error, problem_refusal

SPEC = EmulatorApp(
    name="emulators.pull_client",
    title="Pull-sync client emulator",
    description="Many pull-sync clients (seed 004) in one process, with fault switches.",
    faults=ClientCalls,
    routers=(api.router, control.router),
    classify=api.classify,
    render_refusal=problem_refusal,
    http_error=problem_http_error,
)


def create_app(config: PullClientEmulatorConfig | None = None) -> FastAPI:
    """A fresh emulator: the `default` identity with its seed records, no faults."""
    settings = config or PullClientEmulatorConfig()
    return build_app(SPEC, settings, lambda config, http: PullClientEmulator(config))
