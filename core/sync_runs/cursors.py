"""Each module's incremental cursor for a company: read them all, reset one.

Airbyte's per-stream refresh: a reset cursor makes the next incremental run of that module
read its whole history (no `updated_since`), while the other modules go on from their own
cursors. A reset is refused while the company has a run in progress (the run read the cursors
when it opened and commits them when its modules end); a run created before a reset never
moves the reset cursor (`activities.sync`), which covers a run that slips in between the
check and the write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import SyncCursor, SyncRun, utcnow
from core.sync_runs.store import active_run_id
from sync_modules.registry import all_modules, get_module


class CursorState(StrEnum):
    SYNCED = "synced"  # the next incremental run reads rows updated since the cursor
    RESET = "reset"  # the next incremental run reads the module's whole history
    NEVER_SYNCED = "never_synced"  # the next incremental run starts 30 days back


@dataclass(frozen=True)
class ModuleCursor:
    module: str
    state: CursorState
    updated_since: datetime | None
    updated_at: datetime | None
    reset_at: datetime | None
    reset_by: str | None
    rows: int  # the company's stored rows of the module
    last_run: SyncRun | None  # the run that last moved the cursor


class RunInProgress(Exception):
    """The company has a run queued or running: its cursors are not to be changed now."""

    def __init__(self, company_id: str, run_id: str) -> None:
        super().__init__(f"company {company_id} has run {run_id} in progress")
        self.run_id = run_id


async def stored_rows(session: AsyncSession, company_id: str, module: str) -> int:
    table = get_module(module).table
    count = await session.scalar(
        select(func.count()).select_from(table).where(table.c.company_id == company_id)
    )
    return int(count or 0)


def _state(cursor: SyncCursor | None) -> CursorState:
    if cursor is None:
        return CursorState.NEVER_SYNCED
    return CursorState.RESET if cursor.updated_since is None else CursorState.SYNCED


async def _cursor_of(
    session: AsyncSession, company_id: str, module: str, cursor: SyncCursor | None
) -> ModuleCursor:
    last_run = None
    if cursor is not None and cursor.run_id is not None:
        last_run = await session.get(SyncRun, cursor.run_id)
    return ModuleCursor(
        module=module,
        state=_state(cursor),
        updated_since=cursor.updated_since if cursor is not None else None,
        updated_at=cursor.updated_at if cursor is not None else None,
        reset_at=cursor.reset_at if cursor is not None else None,
        reset_by=cursor.reset_by if cursor is not None else None,
        rows=await stored_rows(session, company_id, module),
        last_run=last_run,
    )


async def list_cursors(session: AsyncSession, company_id: str) -> list[ModuleCursor]:
    """Every module's cursor for the company, in the order a full run visits them."""
    rows = await session.scalars(select(SyncCursor).where(SyncCursor.company_id == company_id))
    found = {cursor.module: cursor for cursor in rows.all()}
    return [
        await _cursor_of(session, company_id, module, found.get(module)) for module in all_modules()
    ]


async def reset_cursor(
    session: AsyncSession, company_id: str, module: str, by: str
) -> ModuleCursor:
    """Reset one module's cursor (the others are untouched); commits.

    Raises RunInProgress while the company has a run queued or running.
    """
    get_module(module)  # KeyError for an unknown module, before anything is written
    for attempt in (1, 2):
        busy = await active_run_id(session, company_id)
        if busy is not None:
            raise RunInProgress(company_id, busy)
        now = utcnow()
        cursor = await session.get(SyncCursor, (company_id, module), with_for_update=True)
        if cursor is None:
            cursor = SyncCursor(company_id=company_id, module=module, updated_since=None)
            session.add(cursor)
        cursor.updated_since = None
        cursor.updated_at = now
        cursor.reset_at = now
        cursor.reset_by = by
        try:
            await session.commit()
        except IntegrityError:
            # Another request (or a run's first commit) made the row meanwhile: reset that one.
            await session.rollback()
            if attempt == 2:
                raise
            continue
        break
    return await _cursor_of(session, company_id, module, cursor)
