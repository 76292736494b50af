"""Request and response models of bulk actions on jobs (`POST /v1/jobs/cancel`,
`POST /v1/jobs/rerun`, `GET /v1/jobs/batches/{id}`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from core.batch_contracts import BatchAction, BatchStatus, job_batch_workflow_id
from core.contracts import JobKind, JobStatus
from core.events import batch_topic
from core.ids import JOB_ID_PATTERN, NAME_ID_PATTERN
from core.jobs.bulk import BULK_CANCEL_REASON, JobFilter
from core.links import workflow_url
from core.models import JobBatch, JobBatchItem
from core.settings import Settings

JobIdItem = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN)]
# A hard bound on the body; BULK_MAX_JOBS (422 past it) is the limit that counts.
MAX_IDS_IN_BODY = 100_000
MAX_FAILURES_SHOWN = 100


class BulkJobFilter(BaseModel):
    """Every field given must hold; a list matches any of its values."""

    model_config = ConfigDict(extra="forbid")

    status: list[JobStatus] = Field(default_factory=list)
    kind: list[JobKind] = Field(default_factory=list)
    provider: list[str] = Field(default_factory=list)
    created_after: AwareDatetime | None = Field(None, description="created at or after")
    created_before: AwareDatetime | None = Field(None, description="created before")
    project_id: str | None = Field(None, pattern=NAME_ID_PATTERN)

    @field_validator("created_after", "created_before")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None

    @model_validator(mode="after")
    def _check(self) -> BulkJobFilter:
        if (
            self.created_after is not None
            and self.created_before is not None
            and self.created_after >= self.created_before
        ):
            raise ValueError("created_after must be before created_before")
        return self

    def as_filter(self) -> JobFilter:
        return JobFilter(
            status=[s.value for s in self.status], kind=[k.value for k in self.kind],
            provider=list(self.provider), created_after=self.created_after,
            created_before=self.created_before, project_id=self.project_id,
        )  # fmt: skip


class BulkJobsRequest(BaseModel):
    """The jobs to act on: `ids` or `filter`, exactly one. Your own jobs only, unless an admin
    sends `all_users: true`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"filter": {"status": ["failed"], "provider": ["replicate"]}},
                {"ids": ["0f3c…", "9b1a…"]},
            ]
        },
    )

    ids: list[JobIdItem] | None = Field(None, min_length=1, max_length=MAX_IDS_IN_BODY)
    filter: BulkJobFilter | None = None
    all_users: bool = Field(False, description="admins only: every user's jobs")

    @model_validator(mode="after")
    def _one_of(self) -> BulkJobsRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("send exactly one of 'ids' and 'filter'")
        return self

    def criteria(self) -> dict[str, Any]:
        """What the batch records of the request (ids by count: the items list them)."""
        if self.ids is not None:
            return {"ids": len(self.ids), "all_users": self.all_users}
        assert self.filter is not None
        return {"filter": self.filter.model_dump(mode="json"), "all_users": self.all_users}


class BulkCancelRequest(BulkJobsRequest):
    reason: str = Field(BULK_CANCEL_REASON, max_length=500)


class BulkRerunRequest(BulkJobsRequest):
    pass


class BatchAccepted(BaseModel):
    batch_id: str
    action: BatchAction
    matched: int = Field(description="jobs the batch acts on")
    status_url: str = Field(description="GET it for the batch's progress")
    topic: str = Field(description="its progress on the live stream: /v1/events?topic=…")


class BatchFailure(BaseModel):
    job_id: str
    error: str | None


class BatchPublic(BaseModel):
    id: str
    action: BatchAction
    status: BatchStatus
    user_id: str = Field(description="who asked")
    all_users: bool
    filter: dict[str, Any] | None = Field(description="the filter asked for (null: by ids)")
    total: int
    done: int = Field(description="cancel: told to stop; rerun: the new job started")
    failed: int
    skipped: int = Field(description="cancel: had finished already")
    error: str | None = Field(description="why the batch stopped before the end")
    failures: list[BatchFailure] = Field(
        description=f"the failed jobs and why (the first {MAX_FAILURES_SHOWN})"
    )
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    topic: str
    workflow_id: str
    workflow_url: str | None


def batch_public(
    batch: JobBatch, failed_items: list[JobBatchItem], settings: Settings
) -> BatchPublic:
    workflow_id = job_batch_workflow_id(batch.id)
    return BatchPublic(
        id=batch.id,
        action=BatchAction(batch.action),
        status=BatchStatus(batch.status),
        user_id=batch.user_id,
        all_users=batch.all_users,
        filter=(batch.criteria or {}).get("filter"),
        total=batch.total,
        done=batch.done,
        failed=batch.failed,
        skipped=batch.skipped,
        error=batch.error,
        failures=[BatchFailure(job_id=i.job_id, error=i.error) for i in failed_items],
        created_at=batch.created_at,
        updated_at=batch.updated_at,
        completed_at=batch.completed_at,
        topic=batch_topic(batch.id),
        workflow_id=workflow_id,
        workflow_url=workflow_url(settings, workflow_id),
    )
