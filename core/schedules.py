"""Temporal Schedules the workers create at start: one shape, created once whoever starts first."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)

RPC_TIMEOUT = timedelta(seconds=10)


def next_runs(described: ScheduleDescription, count: int = 3) -> list[datetime]:
    """When the schedule will start its next runs; none while it is paused (Temporal still
    lists the times it would run at)."""
    if described.schedule.state.paused:
        return []
    return list(described.info.next_action_times[:count])


def recent_runs(described: ScheduleDescription, count: int = 5) -> list[str]:
    """The workflow ids of the runs it started last."""
    return [
        action.action.workflow_id
        for action in described.info.recent_actions[-count:]
        if hasattr(action.action, "workflow_id")
    ]


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
