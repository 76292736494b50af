"""PruneEventsWorkflow: deletes old events of the outbox; a Temporal Schedule runs it hourly."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.contracts import EVENTS_PRUNE
    from workflows.policies import PRUNE_RETRY

PRUNE_SCHEDULE_ID = "autosync-prune-events"


@workflow.defn(name="PruneEventsWorkflow")
class PruneEventsWorkflow:
    @workflow.run
    async def run(self, retention_hours: float) -> int:
        pruned: int = await workflow.execute_activity(
            EVENTS_PRUNE,
            retention_hours,
            result_type=int,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=PRUNE_RETRY,
        )
        return pruned
