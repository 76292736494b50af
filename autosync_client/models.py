"""What the API answers, as typed models.

Each model names the fields the client and the CLI rely on; fields the server adds later are
kept (`extra="allow"`), so a newer server never breaks an older client. Required fields are
checked against the API's OpenAPI schema by tests/client/test_openapi_contract.py.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JOB_TERMINAL = frozenset({"succeeded", "failed", "canceled"})
RUN_TERMINAL = frozenset({"DONE", "FAILED", "CANCELED"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Output(Model):
    index: int
    url: str
    thumbnail_url: str | None = None
    key: str
    content_type: str
    bytes: int
    sha256: str
    width: int | None = None
    height: int | None = None


class Job(Model):
    id: str
    kind: str
    status: str
    user_id: str
    provider: str
    provider_status: str | None = None
    provider_job_id: str | None = None
    model: str
    input: dict[str, Any] = Field(default_factory=dict)
    project_id: str | None = None
    node_id: str | None = None
    error: str | None = None
    outputs: list[Output] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    workflow_id: str
    workflow_url: str | None = None
    rerun_of: str | None = Field(None, description="the job this one reruns (POST .../rerun)")

    @property
    def done(self) -> bool:
        return self.status in JOB_TERMINAL


class JobPage(Model):
    items: list[Job]
    next_cursor: str | None = None


class JobUpdate(Model):
    """A job's state as the live stream (or a poll) reports it; `event_id` None when polled."""

    id: str
    status: str
    provider_status: str | None = None
    error: str | None = None
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    event_id: int | None = None

    @property
    def done(self) -> bool:
        return self.status in JOB_TERMINAL


class BatchStarted(Model):
    batch_id: str
    matched: int
    status_url: str


class Batch(Model):
    """A bulk cancel or rerun as it goes (its other fields are the server's)."""

    id: str
    action: str
    status: str
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    error: str | None = None


class ModuleProgress(Model):
    status: str
    processed: int = 0
    skipped: int = 0
    errors: int = 0
    error: str | None = None


class LogLine(Model):
    id: int | None = None  # the stream's log events carry none
    at: datetime
    level: str
    module: str | None = None
    message: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class SyncRun(Model):
    id: str
    company_id: str
    mode: str
    start_date: date | None = None
    end_date: date | None = None
    status: str
    current_module: str | None = None
    modules: dict[str, ModuleProgress] = Field(default_factory=dict)
    error_message: str | None = None
    triggered_by: str | None = None
    created_at: datetime
    finished_at: datetime | None = None
    workflow_id: str
    workflow_url: str | None = None
    recent_logs: list[LogLine] = Field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in RUN_TERMINAL


class SyncRunPage(Model):
    items: list[SyncRun]
    next_cursor: str | None = None


class LogPage(Model):
    items: list[LogLine]
    next_after: int | None = None


class RunUpdate(Model):
    """One change of a sync run: its status (`kind="status"`), a module's progress
    (`"module"`) or a log line (`"log"`); `event_id` None when polled."""

    kind: str
    run_id: str
    status: str | None = None
    module: str | None = None
    progress: ModuleProgress | None = None
    log: LogLine | None = None
    event_id: int | None = None

    @property
    def done(self) -> bool:
        return self.kind == "status" and self.status in RUN_TERMINAL


class Schedule(Model):
    company_id: str
    schedule_id: str
    every_minutes: int | None = None
    paused: bool
    note: str | None = None
    next_runs: list[datetime] = Field(default_factory=list)
    recent_runs: list[str] = Field(default_factory=list)


class ApiKey(Model):
    id: str
    user_id: str
    is_admin: bool
    name: str | None = None
    created_at: datetime
    revoked_at: datetime | None = None
    bootstrap: bool = False


class ApiKeyList(Model):
    items: list[ApiKey]


class ApiKeyCreated(ApiKey):
    key: str = Field(description="the key itself: shown this once")


class Usage(Model):
    """Spend and counts grouped by day, kind, provider or user (GET /v1/usage); the server's
    fields are kept as they come."""


class Me(Model):
    user_id: str
    is_admin: bool
    topics: list[str] = Field(default_factory=list)
    providers: list[str] = Field(default_factory=list)
    companies: list[str] = Field(default_factory=list)


class Event(Model):
    """One event of the live stream (GET /v1/events)."""

    id: int
    type: str
    data: dict[str, Any]
