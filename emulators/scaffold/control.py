"""The control routes every emulator has (`/_emulator/...`, no auth).

`health`, `stats`, `faults` (GET, PUT replaces, DELETE clears), `reset`, and for emulators
that create provider jobs, `jobs` (per app job id, see `scaffold.jobs`). A protocol adds its
own control routes (force a job's end, move a clock, touch rows ...) in a router of its own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from emulators.scaffold.emulator import EmulatorBase
from emulators.scaffold.faults import CallFaults
from emulators.scaffold.jobs import provider_jobs


def _emulator(request: Request) -> EmulatorBase[Any, Any]:
    emulator: EmulatorBase[Any, Any] = request.app.state.emulator
    return emulator


def _faults_answer(emulator: EmulatorBase[Any, Any]) -> JSONResponse:
    return JSONResponse(emulator.faults.global_faults.model_dump(mode="json"))


def control_router(faults_model: type[CallFaults], *, jobs: bool) -> APIRouter:
    router = APIRouter(prefix="/_emulator")

    @router.get("/health")
    async def health() -> dict[str, bool]:
        """Liveness."""
        return {"ok": True}

    @router.get("/stats")
    async def stats(request: Request) -> dict[str, Any]:
        """Calls by kind and status, faults applied, webhooks, and the emulator's own counts."""
        emulator = _emulator(request)
        return {**emulator.stats.snapshot(), **emulator.stats_extra()}

    @router.get("/faults", response_model=None)
    async def get_faults(request: Request) -> JSONResponse:
        """The global faults; counters show what is left."""
        return _faults_answer(_emulator(request))

    async def put_faults(faults: Any, request: Request) -> JSONResponse:
        """Replace the global faults (fields left out go back to their defaults)."""
        emulator = _emulator(request)
        emulator.faults.replace(faults)
        return _faults_answer(emulator)

    # The body's model is the emulator's own; FastAPI reads it from the annotation.
    put_faults.__annotations__["faults"] = faults_model
    router.add_api_route("/faults", put_faults, methods=["PUT"], response_model=None)

    @router.delete("/faults", response_model=None)
    async def delete_faults(request: Request) -> JSONResponse:
        """Back to no global faults."""
        emulator = _emulator(request)
        emulator.clear_faults()
        return _faults_answer(emulator)

    @router.post("/reset")
    async def reset(request: Request) -> dict[str, bool]:
        """Forget every job, fault and counter."""
        await _emulator(request).reset()
        return {"ok": True}

    if jobs:

        @router.get("/jobs")
        async def list_jobs(request: Request, job_id: str | None = None) -> dict[str, Any]:
            """Provider jobs per app job id (the `job_id=` of their webhook URL), oldest first."""
            return provider_jobs(_emulator(request).provider_jobs(), job_id)

    return router
