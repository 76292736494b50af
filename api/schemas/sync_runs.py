"""Request and response models of sync runs and their schedules, and a run row made public."""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.contracts import SyncMode, SyncStatus, sync_run_workflow_id
from core.ids import NAME_ID_PATTERN
from core.links import workflow_url
from core.models import SyncRun, SyncRunLog, SyncRunModule
from core.settings import Settings
from sync_modules.registry import all_modules

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class SyncRunCreate(BaseModel):
    """A run: `incremental` (from each module's cursor) or `period` (a month or two dates)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"company_id": "acme", "mode": "period", "month": "2024-12"}]
        },
    )

    company_id: str = Field(pattern=NAME_ID_PATTERN)
    mode: SyncMode
    month: str | None = Field(None, description="period runs: YYYY-MM")
    start_date: date | None = None
    end_date: date | None = None
    modules: list[str] | None = Field(None, description="a subset of the modules; default all")

    @model_validator(mode="after")
    def _check(self) -> SyncRunCreate:
        known = list(all_modules())
        unknown = [m for m in self.modules or [] if m not in known]
        if unknown:
            raise ValueError(f"unknown modules {unknown}; known: {', '.join(known)}")
        if self.modules is not None and not self.modules:
            raise ValueError("modules, when given, must name at least one module")
        if self.mode == SyncMode.INCREMENTAL:
            if self.month or self.start_date or self.end_date:
                raise ValueError(
                    "incremental runs take no month or dates (they start from each module's cursor)"
                )
            return self
        if self.month:
            if self.start_date or self.end_date:
                raise ValueError("give either month or start_date/end_date, not both")
            match = _MONTH.match(self.month)
            if not match or not 1 <= int(match.group(2)) <= 12:
                raise ValueError(f"month {self.month!r} must look like 2024-12 (YYYY-MM)")
            year, month = int(match.group(1)), int(match.group(2))
            self.start_date = date(year, month, 1)
            self.end_date = date(year, month, calendar.monthrange(year, month)[1])
        if not self.start_date or not self.end_date:
            raise ValueError("period runs need month (YYYY-MM) or both start_date and end_date")
        if self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        return self


class ModulePublic(BaseModel):
    status: str
    processed: int = 0
    skipped: int = 0
    errors: int = 0
    pages: int = 0
    enriched: int = 0
    error: str | None = None
    received: int = Field(0, description="rows the upstream's pages carried")
    upstream_total: int | None = Field(
        None, description="rows the upstream reported for the module's listing (its last page)"
    )


class ReconciliationPublic(BaseModel):
    """A done module's rows received against the total the upstream reported."""

    upstream: int
    received: int
    matched: bool


class LogPublic(BaseModel):
    id: int
    at: datetime
    level: str
    module: str | None
    message: str
    metadata: dict[str, Any]


class SyncRunPublic(BaseModel):
    id: str
    company_id: str
    mode: SyncMode
    start_date: date | None
    end_date: date | None
    status: SyncStatus
    current_module: str | None
    modules: dict[str, ModulePublic]
    reconciliation: dict[str, ReconciliationPublic] = Field(
        default_factory=dict,
        description="modules done whose upstream reported a total; `matched` false flags rows "
        "lost on the way",
    )
    error_message: str | None
    triggered_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    workflow_id: str
    workflow_url: str | None
    recent_logs: list[LogPublic] = Field(default_factory=list)


class SyncRunsPublic(BaseModel):
    items: list[SyncRunPublic]
    next_cursor: str | None


class LogsPublic(BaseModel):
    items: list[LogPublic]
    next_after: int | None = Field(description="pass as ?after= for the next page")


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    company_id: str = Field(pattern=NAME_ID_PATTERN)
    every_minutes: int = Field(ge=1, le=7 * 24 * 60, description="minutes between runs")
    paused: bool = False


class ScheduleRetime(BaseModel):
    model_config = ConfigDict(extra="forbid")
    every_minutes: int = Field(ge=1, le=7 * 24 * 60)


class SchedulePublic(BaseModel):
    company_id: str
    schedule_id: str
    every_minutes: int | None
    paused: bool
    note: str | None
    next_runs: list[datetime]
    recent_runs: list[str] = Field(description="workflow ids of the latest runs it started")


def log_public(log: SyncRunLog) -> LogPublic:
    return LogPublic(id=log.id, at=log.at, level=log.level, module=log.module,
                     message=log.message, metadata=log.metadata_)  # fmt: skip


def run_public(
    run: SyncRun,
    settings: Settings,
    live: dict[str, SyncRunModule] | None = None,
    logs: list[SyncRunLog] | None = None,
) -> SyncRunPublic:
    """The run as the API shows it: each module from its live row when there is one (`live`),
    else from the run's recorded progress."""
    modules: dict[str, ModulePublic] = {}
    for name in run.modules:
        row = (live or {}).get(name)
        entry = run.progress.get("modules", {}).get(name, {})
        if row is not None:
            modules[name] = ModulePublic(status=row.status, processed=row.processed,
                                         skipped=row.skipped, errors=row.errors,
                                         pages=row.pages, enriched=row.enriched,
                                         error=row.error, received=row.received,
                                         upstream_total=row.upstream_total)  # fmt: skip
        else:
            modules[name] = ModulePublic(**{"status": "pending", **entry})
    workflow_id = sync_run_workflow_id(run.id)
    return SyncRunPublic(
        id=run.id, company_id=run.company_id, mode=SyncMode(run.mode), start_date=run.start_date,
        end_date=run.end_date, status=SyncStatus(run.status), current_module=run.current_module,
        modules=modules, error_message=run.error_message,
        reconciliation={name: ReconciliationPublic(**entry)
                        for name, entry in run.progress.get("reconciliation", {}).items()}, triggered_by=run.triggered_by,
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        workflow_id=workflow_id, workflow_url=workflow_url(settings, workflow_id),
        recent_logs=[log_public(log) for log in logs or []],
    )  # fmt: skip
