"""Request and response models of the sync modules' cursors (view, reset)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from core.contracts import SyncMode, SyncStatus
from core.ids import NAME_ID_PATTERN
from core.sync_runs.cursors import CursorState, ModuleCursor


class CursorReset(BaseModel):
    """Whose cursor to reset: the module is in the path."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"company_id": "acme"}]}
    )
    company_id: str = Field(pattern=NAME_ID_PATTERN)


class CursorRunPublic(BaseModel):
    id: str
    mode: SyncMode
    status: SyncStatus
    finished_at: datetime | None


class CursorPublic(BaseModel):
    module: str
    state: CursorState = Field(
        description="synced: the next incremental run reads rows updated since `updated_since`; "
        "reset: it reads the module's whole history; never_synced: it starts 30 days back"
    )
    updated_since: datetime | None = Field(description="the watermark (null unless synced)")
    updated_at: datetime | None
    reset_at: datetime | None
    reset_by: str | None
    rows: int = Field(description="the company's stored rows of this module")
    last_run: CursorRunPublic | None = Field(description="the run that last moved the cursor")


class CursorsPublic(BaseModel):
    company_id: str
    items: list[CursorPublic]


def cursor_public(cursor: ModuleCursor) -> CursorPublic:
    run = cursor.last_run
    return CursorPublic(
        module=cursor.module, state=cursor.state, updated_since=cursor.updated_since,
        updated_at=cursor.updated_at, reset_at=cursor.reset_at, reset_by=cursor.reset_by,
        rows=cursor.rows,
        last_run=CursorRunPublic(id=run.id, mode=SyncMode(run.mode), status=SyncStatus(run.status),
                                 finished_at=run.finished_at) if run is not None else None,
    )  # fmt: skip
