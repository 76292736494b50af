"""RetentionWorkflow walks the due jobs batch by batch, passing the cursor on, and continues as
new after `max_batches` from where it stopped (a fake batch activity under the real name)."""

from __future__ import annotations

import uuid

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.retention.contracts import (
    RETENTION_BATCH,
    RETENTION_WORKFLOW,
    RetentionBatchInput,
    RetentionBatchResult,
    RetentionInput,
)
from workflows.retention import RetentionWorkflow


class FakeBatches:
    """Seven due jobs, ids j0..j6, handed out `batch_size` at a time after the cursor."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, int]] = []

    @activity.defn(name=RETENTION_BATCH)
    async def batch(self, batch: RetentionBatchInput) -> RetentionBatchResult:
        self.calls.append((batch.after_id, batch.batch_size))
        start = 0 if batch.after_id is None else int(batch.after_id[1:]) + 1
        ids = [f"j{n}" for n in range(start, min(start + batch.batch_size, 7))]
        if not ids:
            return RetentionBatchResult()
        return RetentionBatchResult(
            looked_at=len(ids), expired=len(ids), objects_deleted=2 * len(ids),
            last_completed_at="2026-01-01T00:00:00+00:00", last_id=ids[-1],
            done=len(ids) < batch.batch_size,
        )  # fmt: skip


async def test_batches_follow_the_cursor_across_continue_as_new(env: WorkflowEnvironment) -> None:
    fake = FakeBatches()
    task_queue = f"retention-{uuid.uuid4().hex}"
    async with Worker(
        env.client, task_queue=task_queue, workflows=[RetentionWorkflow], activities=[fake.batch]
    ):
        expired = await env.client.execute_workflow(
            RETENTION_WORKFLOW,
            RetentionInput(batch_size=2, max_batches=2),
            id=f"retention-{uuid.uuid4().hex}",
            task_queue=task_queue,
            result_type=int,
        )
    assert expired == 7
    # j0-1, j2-3 | continue as new | j4-5, j6 (fewer than a batch: done)
    assert fake.calls == [(None, 2), ("j1", 2), ("j3", 2), ("j5", 2)]
