"""PruneEventsWorkflow: deletes old events of the outbox; a Temporal Schedule runs it hourly."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.maintenance import MaintenanceActivities

PRUNE_SCHEDULE_ID = "autosync-prune-events"


@workflow.defn(name="PruneEventsWorkflow")
class PruneEventsWorkflow:
    @workflow.run
    async def run(self, retention_hours: float) -> int:
        return await workflow.execute_activity_method(
            MaintenanceActivities.prune_events,
            retention_hours,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=5),
        )
