"""Bulk actions on jobs (a batch): names and workflow I/O shared by the API, the workflow and
the activities.

Plain data, safe inside the workflow sandbox; every field has a default so histories keep
decoding when one is added.
"""

# No `from __future__ import annotations`: see core/contracts.py.

from dataclasses import dataclass
from enum import StrEnum

JOB_BATCH_WORKFLOW = "JobBatchWorkflow"
JOB_BATCH_WORKFLOW_PREFIX = "job-batch-"
# Activity names: the workflow refers to its activities by these only.
ACT_BATCH_CHUNK = "job_batch.run_chunk"
ACT_BATCH_FINISH = "job_batch.finish"
# The workflow's query: its progress as of its last finished chunk.
BATCH_PROGRESS_QUERY = "progress"


class BatchAction(StrEnum):
    CANCEL = "cancel"
    RERUN = "rerun"


class BatchStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"  # every matched job was acted on (some may have failed or been skipped)
    FAILED = "failed"  # it stopped before the end (see its error)


class ItemOutcome(StrEnum):
    DONE = "done"  # cancel: its workflow was told (or it was cancelled here); rerun: started
    FAILED = "failed"  # see the item's error
    SKIPPED = "skipped"  # cancel: it had finished already


def job_batch_workflow_id(batch_id: str) -> str:
    return f"{JOB_BATCH_WORKFLOW_PREFIX}{batch_id}"


@dataclass
class JobBatchInput:
    batch_id: str = ""
    action: str = BatchAction.CANCEL.value
    total: int = 0  # jobs matched (items 0 … total-1)
    chunk_size: int = 100


@dataclass
class BatchChunk:
    """Items `start` … `start + size - 1` of a batch."""

    batch_id: str = ""
    action: str = BatchAction.CANCEL.value
    start: int = 0
    size: int = 0


@dataclass
class BatchProgress:
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass
class BatchEnd:
    batch_id: str = ""
    error: str | None = None  # set: the batch stopped before the end
