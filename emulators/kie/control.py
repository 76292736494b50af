"""The KIE emulator's own control routes (`/_emulator/...`, no auth), besides the scaffold's
common ones (health, stats, faults, jobs, reset: which also puts the clock back).

Tests and benches use them to force outcomes, move the clock and read what happened to a task.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from emulators.kie.api import EmulatorDep
from emulators.kie.models import ClockAdvance, CompleteRequest
from emulators.kie.records import Task
from emulators.kie.state import Emulator

router = APIRouter(prefix="/_emulator")


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


def _task(emulator: Emulator, task_id: str) -> Task:
    task = emulator.get(task_id)
    if task is None:
        raise HTTPException(404, f"no task {task_id}")
    return task
