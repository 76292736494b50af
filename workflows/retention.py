"""RetentionWorkflow: the scheduled output cleanup (`core.retention.cleanup`), batch by batch.

Each batch is one activity that moves a cursor over the due jobs, oldest first; after
`max_batches` the run continues as new from the cursor, so its history stays short whatever
the backlog. A batch is idempotent (a job is claimed by a guarded status update before its
objects go), so a retried batch or an overlapping manual run deletes nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.retention.contracts import (
        RETENTION_BATCH,
        RETENTION_WORKFLOW,
        RetentionBatchInput,
        RetentionBatchResult,
        RetentionInput,
    )

# A storage or database outage is waited out a while; the next scheduled run goes on anyway.
BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=10,
)


@workflow.defn(name=RETENTION_WORKFLOW)
class RetentionWorkflow:
    @workflow.run
    async def run(self, params: RetentionInput) -> int:
        """Expire every due job; returns how many this run (and the runs it continued) did."""
        expired = params.expired_so_far
        after_at, after_id = params.after_completed_at, params.after_id
        for _ in range(max(1, params.max_batches)):
            result: RetentionBatchResult = await workflow.execute_activity(
                RETENTION_BATCH,
                RetentionBatchInput(
                    batch_size=params.batch_size, after_completed_at=after_at, after_id=after_id
                ),
                result_type=RetentionBatchResult,
                start_to_close_timeout=timedelta(minutes=10),
                retry_policy=BATCH_RETRY,
            )
            expired += result.expired
            workflow.set_current_details(f"{expired} jobs expired so far")
            if result.done or result.last_id is None:
                return expired
            after_at, after_id = result.last_completed_at, result.last_id
        workflow.continue_as_new(
            RetentionInput(
                batch_size=params.batch_size,
                max_batches=params.max_batches,
                after_completed_at=after_at,
                after_id=after_id,
                expired_so_far=expired,
            )
        )
