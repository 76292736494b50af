"""What RetentionWorkflow and its activity exchange: plain data, safe in the workflow sandbox."""

# No `from __future__ import annotations`: see core/contracts.py.

from dataclasses import dataclass

# RetentionWorkflow's activity: (RetentionBatchInput) -> RetentionBatchResult.
RETENTION_BATCH = "retention.batch"
RETENTION_SCHEDULE_ID = "autosync-retention"
RETENTION_WORKFLOW = "RetentionWorkflow"


@dataclass
class RetentionInput:
    batch_size: int = 200
    # Batches one run makes before it continues as new (its history stays short).
    max_batches: int = 100
    # Where the previous run stopped: (completed_at ISO, job id) of the last job looked at.
    after_completed_at: str | None = None
    after_id: str | None = None
    expired_so_far: int = 0


@dataclass
class RetentionBatchInput:
    batch_size: int = 200
    after_completed_at: str | None = None
    after_id: str | None = None


@dataclass
class RetentionBatchResult:
    looked_at: int = 0  # due jobs read in this batch
    expired: int = 0  # marked `expired` by this batch
    kept: int = 0  # due but shown by a project: left as they are
    objects_deleted: int = 0  # stored objects deleted (new expiries and pending ones)
    # The last job looked at; None when no due job was left after the cursor.
    last_completed_at: str | None = None
    last_id: str | None = None
    done: bool = True
