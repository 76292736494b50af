"""Reads of sync runs, their modules and logs, and the writes made before a run's workflow.

Once its workflow runs, a run's record is the workflow's to write (`activities.sync`, forward
only); the API writes it only when no workflow will: when it is created, and when it ends
because its workflow could not be started or was cancelled before it started.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.contracts import SyncMode, SyncStatus
from core.db import newest_first
from core.events import append_run_status
from core.models import ACTIVE_SYNC_STATUSES, SyncRun, SyncRunLog, SyncRunModule, utcnow


def new_run(
    *,
    company_id: str,
    mode: SyncMode,
    modules: list[str],
    triggered_by: str,
    start_date: date | None = None,
    end_date: date | None = None,
) -> SyncRun:
    """A queued run's row, not yet added to a session."""
    return SyncRun(
        id=uuid.uuid4().hex, company_id=company_id, mode=mode.value, start_date=start_date,
        end_date=end_date, modules=modules, status=SyncStatus.QUEUED.value, progress={},
        triggered_by=triggered_by,
    )  # fmt: skip


async def end_unstarted(
    session: AsyncSession, run: SyncRun, status: SyncStatus, message: str
) -> None:
    """End a run no workflow will move (it could not start, or was cancelled first), with its
    event; commits. Ended, not left queued: a queued run holds the company's one active slot."""
    run.status = status.value
    run.error_message = message
    run.finished_at = utcnow()
    await append_run_status(session, run)
    await session.commit()


async def get_run(session: AsyncSession, run_id: str) -> SyncRun | None:
    return await session.get(SyncRun, run_id)


async def active_run_id(session: AsyncSession, company_id: str) -> str | None:
    """The company's run in progress (queued or running), if it has one."""
    return await session.scalar(
        select(SyncRun.id).where(
            SyncRun.company_id == company_id, SyncRun.status.in_(ACTIVE_SYNC_STATUSES)
        )
    )


async def list_runs(
    session: AsyncSession,
    *,
    company_id: str | None = None,
    status: str | None = None,
    before: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> Sequence[SyncRun]:
    """Newest first; `before` is the (created_at, id) of the last row of the previous page."""
    query = select(SyncRun)
    if company_id:
        query = query.where(SyncRun.company_id == company_id)
    if status:
        query = query.where(SyncRun.status == status)
    query = newest_first(query, SyncRun.created_at, SyncRun.id, before, limit)
    return (await session.scalars(query)).all()


async def live_modules(session: AsyncSession, run_id: str) -> dict[str, SyncRunModule]:
    """The run's modules as their activities last committed them, by name."""
    rows = await session.scalars(select(SyncRunModule).where(SyncRunModule.run_id == run_id))
    return {row.module: row for row in rows.all()}


async def latest_logs(session: AsyncSession, run_id: str, limit: int) -> list[SyncRunLog]:
    """The run's `limit` latest log lines, oldest first."""
    rows = await session.scalars(
        select(SyncRunLog).where(SyncRunLog.run_id == run_id)
        .order_by(SyncRunLog.id.desc()).limit(limit)
    )  # fmt: skip
    return list(reversed(rows.all()))


async def list_logs(
    session: AsyncSession,
    run_id: str,
    *,
    level: str | None = None,
    module: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> Sequence[SyncRunLog]:
    """The run's log lines after id `after`, oldest first."""
    query = select(SyncRunLog).where(SyncRunLog.run_id == run_id, SyncRunLog.id > after)
    if level:
        query = query.where(SyncRunLog.level == level)
    if module:
        query = query.where(SyncRunLog.module == module)
    return (await session.scalars(query.order_by(SyncRunLog.id).limit(limit))).all()
