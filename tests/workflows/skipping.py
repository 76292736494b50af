"""Skipping time on the time-skipping test server without stranding a workflow.

The test server refuses the completion of a workflow task that cancels a timer which fired
while the task was with the worker ("invalid history builder state for action",
temporalio/sdk-java#3088), and never times that task out or sends it again: the run hangs,
and so does every query or `result()` on it. Between skips the server's clock runs at real
pace, so a timer due just after a skip (a poll fallback, the admission line's holder check)
can fire while the task of the next signal is being processed on a loaded machine. Seen in CI:
a cancel signalled right after `env.sleep` hung a job until the test's timeout.

`skip` therefore waits for the workflows a test is about to signal to settle, and goes on past
any of their timers due within `GUARD`, so what the test sends next cannot race a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

# Longer than a signal's workflow task takes on a loaded CI machine, shorter than any poll or
# holder-check interval the tests use (so stepping past one timer never lands near the next).
GUARD = timedelta(seconds=3)
MAX_STEPS = 20


async def settled(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the workflow has no task with the worker and no activity running."""
    for _ in range(800):
        raw = (await handle.describe()).raw_description
        if not raw.HasField("pending_workflow_task") and not raw.pending_activities:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{handle.id} never settled")


def pending_timers(events: Iterable[HistoryEvent]) -> list[datetime]:
    """When each timer started and neither fired nor cancelled is due (server clock)."""
    due: dict[str, datetime] = {}
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            started = e.timer_started_event_attributes
            at = e.event_time.ToDatetime(tzinfo=UTC)
            due[started.timer_id] = at + started.start_to_fire_timeout.ToTimedelta()
        elif e.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            due.pop(e.timer_fired_event_attributes.timer_id, None)
        elif e.event_type == EventType.EVENT_TYPE_TIMER_CANCELED:
            due.pop(e.timer_canceled_event_attributes.timer_id, None)
    return sorted(due.values())


async def skip(
    env: WorkflowEnvironment,
    duration: timedelta,
    *handles: WorkflowHandle[Any, Any],
    guard: timedelta = GUARD,
) -> None:
    """Move the clock by `duration`, then past any timer of `handles` due within `guard`.

    A test that means to signal just before a timer (a deadline) passes a smaller `guard`: it
    then races that timer by design, with the margin it chose.
    """
    if duration > timedelta(0):
        await env.sleep(duration)
    for _ in range(MAX_STEPS):
        for handle in handles:
            await settled(handle)
        now = await env.get_current_time()
        soon = [
            at
            for handle in handles
            for at in pending_timers((await handle.fetch_history()).events)
            if at - now <= guard
        ]
        if not soon:
            return
        await env.sleep(max(soon) - now + timedelta(milliseconds=100))
    raise AssertionError(f"timers still due within {guard} of {now}: {soon}")
