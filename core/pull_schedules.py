"""Pull-sync's Temporal Schedules: the cycle (every PULL_SYNC_INTERVAL_SECONDS), the health
probe of inactive clients (slower) and the hourly cleanup.

The REST scheduler (`/v1/pull-sync/scheduler/*`) maps onto the cycle's schedule: stop pauses
it, start unpauses it (creating it if missing), set-interval re-times it. What the Temporal UI
shows is therefore the scheduler's state; there is no loop of our own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from core.pull_contracts import CLEANUP_WORKFLOW, CYCLE_WORKFLOW, PullCycleInput, PullMode
from core.schedules import RPC_TIMEOUT, create_missing, every, next_runs, recent_runs
from core.settings import Settings

CYCLE_SCHEDULE_ID = "pull-sync-cycle"
HEALTH_SCHEDULE_ID = "pull-sync-health"
CLEANUP_SCHEDULE_ID = "pull-sync-cleanup"


def schedules(settings: Settings) -> dict[str, Schedule]:
    queue = settings.pull_sync_task_queue
    return {
        CYCLE_SCHEDULE_ID: every(
            ScheduleActionStartWorkflow(
                CYCLE_WORKFLOW,
                PullCycleInput(mode=PullMode.ALL.value),
                id=f"{CYCLE_SCHEDULE_ID}-run",
                task_queue=queue,
            ),
            timedelta(seconds=settings.pull_sync_interval_seconds),
            "pull every active client",
        ),
        HEALTH_SCHEDULE_ID: every(
            ScheduleActionStartWorkflow(
                CYCLE_WORKFLOW,
                PullCycleInput(mode=PullMode.HEALTH.value),
                id=f"{HEALTH_SCHEDULE_ID}-run",
                task_queue=queue,
            ),
            timedelta(seconds=settings.pull_sync_health_interval_seconds),
            "probe inactive clients; reactivate the healthy",
        ),
        CLEANUP_SCHEDULE_ID: every(
            ScheduleActionStartWorkflow(
                CLEANUP_WORKFLOW, id=f"{CLEANUP_SCHEDULE_ID}-run", task_queue=queue
            ),
            timedelta(hours=1),
            "remove long-inactive clients, prune pull history",
        ),
    }


async def ensure(client: Client, settings: Settings, only: str | None = None) -> list[str]:
    """Create the pull schedules that don't exist yet (all, or `only` that one); returns the
    ids created."""
    wanted = {k: v for k, v in schedules(settings).items() if only is None or k == only}
    return await create_missing(client, wanted)


@dataclass(frozen=True)
class SchedulerState:
    schedule_id: str
    running: bool  # not paused
    interval_seconds: float | None
    note: str | None
    next_runs: list[datetime]
    recent_runs: list[str]


async def describe(handle: ScheduleHandle) -> SchedulerState:
    described = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    intervals = described.schedule.spec.intervals
    return SchedulerState(
        schedule_id=handle.id,
        running=not described.schedule.state.paused,
        interval_seconds=intervals[0].every.total_seconds() if intervals else None,
        note=described.schedule.state.note or None,
        next_runs=next_runs(described),
        recent_runs=recent_runs(described),
    )


async def start(client: Client, settings: Settings, by: str) -> SchedulerState:
    """Unpause the cycle's schedule (create it first if it is missing)."""
    await ensure(client, settings, only=CYCLE_SCHEDULE_ID)
    handle = client.get_schedule_handle(CYCLE_SCHEDULE_ID)
    await handle.unpause(note=f"started by {by}", rpc_timeout=RPC_TIMEOUT)
    return await describe(handle)


async def stop(client: Client, by: str) -> SchedulerState:
    handle = client.get_schedule_handle(CYCLE_SCHEDULE_ID)
    await handle.pause(note=f"stopped by {by}", rpc_timeout=RPC_TIMEOUT)
    return await describe(handle)


async def set_interval(client: Client, seconds: float, by: str) -> SchedulerState:
    """Re-time the cycle's schedule; paused or running, it stays so."""

    def retime(update: ScheduleUpdateInput) -> ScheduleUpdate:
        schedule = update.description.schedule
        schedule.spec = ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=timedelta(seconds=seconds))]
        )
        schedule.state.note = f"interval set to {seconds:g}s by {by}"
        return ScheduleUpdate(schedule=schedule)

    handle = client.get_schedule_handle(CYCLE_SCHEDULE_ID)
    await handle.update(retime, rpc_timeout=RPC_TIMEOUT)
    return await describe(handle)
