"""The emulator's own control and observation routes (`/_emulator/...`, no auth).

Tests and benches use them to switch faults on, force outcomes, move the clock and read what
happened.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from emulators.common import ProviderJob, provider_jobs
from emulators.kie.deps import EmulatorDep
from emulators.kie.models import ClockAdvance, CompleteRequest, Faults
from emulators.kie.records import Task
from emulators.kie.state import Emulator

router = APIRouter(prefix="/_emulator")


@router.get("/health")
async def health() -> dict[str, bool]:
    """Liveness."""
    return {"ok": True}


@router.get("/stats")
async def stats(emulator: EmulatorDep) -> dict[str, Any]:
    """Requests by kind, HTTP statuses, body codes, callback counters and tasks by state."""
    return emulator.stats.snapshot(emulator.tasks_by_state())


@router.get("/jobs")
async def jobs(emulator: EmulatorDep, job_id: str | None = None) -> dict[str, Any]:
    """Provider jobs per app job id (the `job_id=` of their webhook URL), oldest first."""
    return provider_jobs(
        (ProviderJob(r.id, r.callback_url, r.state, False) for r in emulator.records()), job_id
    )


@router.get("/faults")
async def get_faults(emulator: EmulatorDep) -> Faults:
    """The global faults; `rate_limits` and `server_errors` show what is left."""
    return emulator.faults.global_faults


@router.put("/faults")
async def put_faults(faults: Faults, emulator: EmulatorDep) -> Faults:
    """Replace the global faults (task faults apply to tasks created from now on)."""
    emulator.faults.replace(faults)
    return emulator.faults.global_faults


@router.delete("/faults")
async def delete_faults(emulator: EmulatorDep) -> Faults:
    """Back to no global faults."""
    emulator.faults.replace(Faults())
    return emulator.faults.global_faults


@router.get("/clock")
async def get_clock(emulator: EmulatorDep) -> dict[str, float]:
    """The emulator's time (Unix seconds) and how far it runs ahead of the wall clock."""
    return {"now": emulator.clock.now(), "offset_seconds": emulator.clock.offset}


@router.post("/clock")
async def advance_clock(body: ClockAdvance, emulator: EmulatorDep) -> dict[str, float]:
    """Move the emulator's time forward: tasks progress and result files expire accordingly."""
    emulator.clock.advance(body.advance_seconds)
    return {"now": emulator.clock.now(), "offset_seconds": emulator.clock.offset}


@router.get("/tasks/{task_id}/events")
async def events(task_id: str, emulator: EmulatorDep) -> dict[str, Any]:
    """State changes and callback attempts of a task, with emulator-clock times."""
    return _task(emulator, task_id).timeline()


@router.post("/tasks/{task_id}/complete")
async def complete(task_id: str, body: CompleteRequest, emulator: EmulatorDep) -> dict[str, Any]:
    """Force a running task terminal now (a terminal one is left as it is)."""
    task = _task(emulator, task_id)
    emulator.finish(task, body.state, body.fail_msg, body.fail_code)
    return task.to_data()


@router.post("/tasks/{task_id}/expire")
async def expire(task_id: str, emulator: EmulatorDep) -> dict[str, Any]:
    """Remove a task's result files now; its recordInfo keeps the (dead) URLs."""
    task = _task(emulator, task_id)
    emulator.expire_files(task)
    return task.to_data()


@router.post("/reset")
async def reset(emulator: EmulatorDep) -> dict[str, bool]:
    """Forget every task, fault and counter, and put the clock back."""
    await emulator.reset()
    return {"ok": True}


def _task(emulator: Emulator, task_id: str) -> Task:
    task = emulator.get(task_id)
    if task is None:
        raise HTTPException(404, f"no task {task_id}")
    return task
