"""Temporal Schedules the workers create at start: one shape, created once whoever starts first."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)

RPC_TIMEOUT = timedelta(seconds=10)


def every(action: ScheduleActionStartWorkflow, interval: timedelta, note: str = "") -> Schedule:
    """Start `action` every `interval`; a run still going when the next is due skips it."""
    return Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=interval)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=note),
    )


async def create_missing(client: Client, schedules: dict[str, Schedule]) -> list[str]:
    """Create the schedules that don't exist yet (every worker tries; one wins); returns
    the ids this call created."""
    created: list[str] = []
    for schedule_id, schedule in schedules.items():
        try:
            await client.create_schedule(schedule_id, schedule, rpc_timeout=RPC_TIMEOUT)
            created.append(schedule_id)
        except ScheduleAlreadyRunningError:
            pass
    return created
