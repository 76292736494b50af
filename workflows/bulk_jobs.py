"""JobBatchWorkflow: a bulk cancel or rerun of jobs, one workflow per batch.

The API matched the jobs when it was asked and recorded them as the batch's items, in order;
this workflow walks them in chunks of `chunk_size`, one activity per chunk, one chunk at a
time. Each activity acts only on the items of its chunk that have no outcome yet and records
each outcome as it goes, so a retried chunk never cancels or reruns a job twice (a rerun's new
job id is derived from the batch and the old job, so even an action whose outcome was lost
finds the job it made). Progress lives in the app DB and on the batch's live topic; the
workflow keeps the last chunk's count for its query.

Changing how items are cut into chunks (or running chunks side by side) changes the command
sequence: it goes behind `workflow.patched`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from core.batch_contracts import (
        ACT_BATCH_CHUNK,
        ACT_BATCH_FINISH,
        BATCH_PROGRESS_QUERY,
        JOB_BATCH_WORKFLOW,
        BatchChunk,
        BatchEnd,
        BatchProgress,
        JobBatchInput,
    )

# A chunk whose jobs can't be acted on now (Temporal or the database down) is tried again for
# a while; past that the batch ends `failed` with what it did so far.
CHUNK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=20,
)
FINISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)


@workflow.defn(name=JOB_BATCH_WORKFLOW)
class JobBatchWorkflow:
    def __init__(self) -> None:
        self._progress = BatchProgress()

    @workflow.run
    async def run(self, batch: JobBatchInput) -> BatchProgress:
        self._progress = BatchProgress(total=batch.total)
        size = max(1, batch.chunk_size)
        error: str | None = None
        for start in range(0, batch.total, size):
            chunk = BatchChunk(
                batch_id=batch.batch_id, action=batch.action, start=start,
                size=min(size, batch.total - start),
            )  # fmt: skip
            try:
                self._progress = await workflow.execute_activity(
                    ACT_BATCH_CHUNK,
                    chunk,
                    result_type=BatchProgress,
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=timedelta(minutes=1),
                    retry_policy=CHUNK_RETRY,
                    summary=f"{batch.action} jobs {start + 1}-{start + chunk.size}",
                )
            except ActivityError as exc:
                error = f"jobs {start + 1}-{start + chunk.size}: {exc.cause or exc}"
                break
            workflow.set_current_details(self._details(batch.action))
        self._progress = await workflow.execute_activity(
            ACT_BATCH_FINISH,
            BatchEnd(batch_id=batch.batch_id, error=error),
            result_type=BatchProgress,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=FINISH_RETRY,
        )
        workflow.set_current_details(self._details(batch.action))
        return self._progress

    @workflow.query(name=BATCH_PROGRESS_QUERY)
    def progress(self) -> BatchProgress:
        return self._progress

    def _details(self, action: str) -> str:
        p = self._progress
        return f"{action}: {p.done} done, {p.failed} failed, {p.skipped} skipped of {p.total}"
