"""Activities of SyncRunWorkflow.

`fetch_pages` runs on its own task queue, whose activities-per-second limit (set on every
worker alike) carries the upstream rate limit shared by all runs and workers: an activity makes
at most `max_pages` requests. Each page is fetched, upserted and counted in one transaction, and
the module's committed pages say where a retry starts, so counts stay exact after a crash.
Run records and logs are short writes, run as local activities.

Reconciliation: each page adds the rows it carried to the module's `received` and keeps the
total the upstream reported (`upstream_total`); when a module's walk is done, its run records
`{upstream, received, matched}` and a mismatch is logged as a warning. The workflow is not
involved: it is a record of what the committed pages saw.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from core.contracts import (
    ERR_PROVIDER_RATE_LIMITED,
    ERR_PROVIDER_REJECTED,
    SYNC_FETCH_PAGES,
    SYNC_OPEN_RUN,
    SYNC_RECORD,
    SYNC_UPDATED_SINCE,
    TERMINAL_SYNC_STATUSES,
    ModuleProgress,
    ModuleStatus,
    PageRequest,
    RunRecord,
    SyncMode,
    SyncRunInput,
    SyncStatus,
)
from core.db import uninterrupted
from core.events import append_event, append_run_status, sync_run_topic
from core.models import SyncCursor, SyncRun, SyncRunLog, SyncRunModule, utcnow
from core.sync_runs.store import active_run_id
from providers.base import ProviderError, ProviderRateLimited, ProviderRejected
from sync_modules.base import SyncModule
from sync_modules.erp_client import ErpClient, Page
from sync_modules.registry import get_module
from sync_modules.store import upsert_items

FIRST_INCREMENTAL_DAYS = 30
# A module's progress becomes an event at most this often per activity (and on its last page).
PROGRESS_EVENT_SECONDS = 0.5


@dataclass(frozen=True)
class LogLine:
    level: str
    module: str | None
    message: str
    metadata: dict[str, Any]


class _Uncounted(Exception):
    """A page's count found the module elsewhere than that page: undo its upsert."""


def module_event(run_id: str, module: str, progress: ModuleProgress) -> dict[str, Any]:
    """A `sync_run.module` event's payload: the module's counts as the API shows them."""
    entry = asdict(progress) | {"status": progress.status.value}
    entry.pop("cursor", None)
    return {"run_id": run_id, "module": module, "progress": entry}


def progress_of(row: SyncRunModule) -> ModuleProgress:
    return ModuleProgress(
        status=ModuleStatus(row.status),
        processed=row.processed,
        skipped=row.skipped,
        errors=row.errors,
        pages=row.pages,
        enriched=row.enriched,
        cursor=row.cursor,
        done=row.done,
        error=row.error,
        received=row.received,
        upstream_total=row.upstream_total,
    )


def reconciliation_of(row: SyncRunModule) -> dict[str, Any] | None:
    """`{upstream, received, matched}` of a module whose walk is done; None if the upstream
    reported no total (or the walk is not over)."""
    if row.upstream_total is None or not row.done:
        return None
    return {
        "upstream": row.upstream_total,
        "received": row.received,
        "matched": row.received == row.upstream_total,
    }


class SyncActivities:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], erp: ErpClient) -> None:
        self._sessions = sessions
        self._erp = erp

    async def _module_row(self, session: AsyncSession, run_id: str, module: str) -> SyncRunModule:
        row = await session.get(SyncRunModule, (run_id, module), with_for_update=True)
        if row is None:
            row = SyncRunModule(run_id=run_id, module=module, status=ModuleStatus.RUNNING.value)
            session.add(row)
            await session.flush()
        return row

    # The wire name predates `max_pages`; kept so recorded and running histories stay valid.
    @activity.defn(name=SYNC_FETCH_PAGES)
    async def fetch_pages(self, request: PageRequest) -> ModuleProgress:
        """Fetch and store up to `request.max_pages` pages of a module, each committed alone.

        The module's committed pages are the truth: after a crash, a retry (or the next
        activity) starts where they end, so no page is counted twice. Once a page is
        committed, an error ends the activity with its progress instead of failing it; the
        error comes back on the next activity's first page, which fails or retries it then.
        """
        module = get_module(request.module)
        async with self._sessions() as session:
            row = await session.get(SyncRunModule, (request.run_id, request.module))
        progress = ModuleProgress(
            status=ModuleStatus.RUNNING, pages=request.page, cursor=request.cursor
        )
        if row is not None and row.pages >= request.page:
            progress = progress_of(row)
        enrich_left = request.enrich
        committed = 0
        announced = -PROGRESS_EVENT_SECONDS
        while not progress.done and committed < request.max_pages:
            # The first, the last and one page every PROGRESS_EVENT_SECONDS become events.
            announce = (
                time.monotonic() - announced >= PROGRESS_EVENT_SECONDS
                or committed == request.max_pages - 1
            )
            # Shielded: a cancel (the run's) lets the page under way finish, then stops.
            page = asyncio.ensure_future(
                self._one_page(request, module, progress, enrich_left, announce)
            )
            try:
                progress, enriched = await asyncio.shield(page)
            except asyncio.CancelledError:
                with suppress(ApplicationError):
                    progress, _ = await page
                return progress
            except ApplicationError:
                if committed:
                    break
                raise
            enrich_left -= enriched
            committed += 1
            if announce:
                announced = time.monotonic()
            activity.heartbeat(progress.pages, progress.cursor)
        return progress

    async def _one_page(
        self,
        request: PageRequest,
        module: SyncModule,
        progress: ModuleProgress,
        enrich: int,
        announce: bool,
    ) -> tuple[ModuleProgress, int]:
        """Fetch, enrich and commit the module's next page; (progress, rows enriched)."""
        page = await self._fetch(request, module.view, progress.cursor)
        enriched = await self._enrich(request, module.view, page.items, enrich)
        committed = await self._commit(request, module, progress.pages, page, enriched, announce)
        return committed, enriched

    async def _fetch(self, request: PageRequest, view: str, cursor: str | None) -> Page:
        try:
            # Past a second a page heartbeats: a killed worker's page is retried within seconds.
            async with heartbeating(first_after=1.0):
                return await self._erp.page(
                    request.company_id,
                    view,
                    cursor=cursor,
                    limit=request.page_size,
                    start_date=request.start_date,
                    end_date=request.end_date,
                    updated_since=request.updated_since,
                )
        except ProviderRateLimited as exc:
            # Not retried here: the workflow waits `retry_after` on a durable timer, so a
            # 429 storm never uses up the retries meant for real failures.
            raise ApplicationError(
                str(exc), exc.retry_after, type=ERR_PROVIDER_RATE_LIMITED, non_retryable=True
            ) from exc
        except ProviderRejected as exc:
            raise ApplicationError(
                f"{view}: {exc}", type=ERR_PROVIDER_REJECTED, non_retryable=True
            ) from exc
        except (ProviderError, httpx.HTTPError) as exc:
            raise ApplicationError(f"{view}: {exc}") from exc

    async def _commit(
        self,
        request: PageRequest,
        module: SyncModule,
        page_no: int,
        page: Page,
        enriched: int,
        announce: bool = True,
    ) -> ModuleProgress:
        """Store page `page_no` and count it, in one transaction, unless it already was.

        The count is one conditional UPDATE (`pages = page_no`): an attempt the server gave up
        on that committed the page first makes this one roll back its upsert.
        """
        now = utcnow()
        async with self._sessions() as session:
            try:
                async with session.begin():
                    stored = await upsert_items(
                        session, module, request.company_id, page.items, run_id=request.run_id,
                        now=now,
                    )  # fmt: skip
                    counted = (
                        await session.execute(
                            update(SyncRunModule)
                            .where(
                                SyncRunModule.run_id == request.run_id,
                                SyncRunModule.module == request.module,
                                SyncRunModule.pages == page_no,
                            )
                            .values(
                                processed=SyncRunModule.processed + stored.written,
                                skipped=SyncRunModule.skipped + stored.skipped,
                                errors=SyncRunModule.errors + stored.errors,
                                enriched=SyncRunModule.enriched + enriched,
                                received=SyncRunModule.received + len(page.items),
                                upstream_total=(
                                    page.total
                                    if page.total is not None
                                    else SyncRunModule.upstream_total
                                ),
                                pages=page_no + 1,
                                cursor=page.next_cursor or SyncRunModule.cursor,
                                done=page.next_cursor is None,
                                status=ModuleStatus.RUNNING.value,
                                updated_at=now,
                            )
                            .returning(SyncRunModule)
                        )
                    ).scalar_one_or_none()
                    if counted is None:
                        raise _Uncounted  # rolls the upsert back
                    progress = progress_of(counted)
                    if announce or progress.done:
                        await append_event(
                            session,
                            sync_run_topic(request.run_id),
                            "sync_run.module",
                            module_event(request.run_id, request.module, progress),
                        )
                    return progress
            except _Uncounted:
                pass
            # Counted already, or the module has no row yet (its start wasn't recorded).
            async with session.begin():
                row = await self._module_row(session, request.run_id, request.module)
                if row.pages != page_no:
                    return progress_of(row)
        return await self._commit(request, module, page_no, page, enriched, announce)

    async def _enrich(
        self, request: PageRequest, view: str, items: list[dict[str, Any]], budget: int
    ) -> int:
        """Add `details` to the first `budget` items (one detail request each).

        Best effort: the first refused or failed detail ends the page's enrichment, and the
        unused budget goes back to the run. A page never fails, nor is fetched again, for it.
        """
        count = 0
        for item in items[: max(0, budget)]:
            try:
                detail = await self._erp.detail(request.company_id, view, str(item["id"]))
            except (ProviderError, httpx.HTTPError) as exc:
                activity.logger.warning("enrichment of %s stopped: %s", view, exc)
                break
            item["details"] = detail.get("details", detail)
            count += 1
        return count

    @activity.defn(name=SYNC_OPEN_RUN)
    async def open_run(self, run: SyncRunInput) -> str | None:
        """Create the record of a scheduled run; the id of the company's active run if busy."""
        fields: dict[str, Any] = {
            "id": run.run_id,
            "company_id": run.company_id,
            "mode": run.mode.value,
            "modules": run.modules,
            "progress": {},
            "triggered_by": "schedule",
        }
        async with self._sessions() as session:
            if await session.get(SyncRun, run.run_id) is not None:
                return None  # created by an earlier attempt of this activity
            queued = SyncRun(status=SyncStatus.QUEUED.value, **fields)
            session.add(queued)
            try:
                await append_run_status(session, queued)
                await session.commit()
                return None
            except IntegrityError:
                await session.rollback()
            busy = await active_run_id(session, run.company_id)
            # Keep a trace of the skipped run in the history.
            skipped = SyncRun(
                status=SyncStatus.SKIPPED.value,
                error_message=f"skipped: run {busy} was in progress",
                finished_at=utcnow(),
                **fields,
            )
            session.add(skipped)
            await append_run_status(session, skipped)
            await session.commit()
            return busy or "unknown"

    @activity.defn(name=SYNC_UPDATED_SINCE)
    async def updated_since(self, company_id: str, modules: list[str]) -> dict[str, str]:
        """Where each module's incremental run starts: its cursor, or 30 days back.

        A reset cursor is left out: the module's pages then have no `updated_since` and read
        its whole history.
        """
        default = (datetime.now(UTC) - timedelta(days=FIRST_INCREMENTAL_DAYS)).isoformat()
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(SyncCursor).where(
                        SyncCursor.company_id == company_id, SyncCursor.module.in_(modules)
                    )
                )
            ).all()
        found = {row.module: row.updated_since for row in rows}
        since: dict[str, str] = {}
        for name in modules:
            if name not in found:
                since[name] = default
            elif (cursor := found[name]) is not None:
                since[name] = cursor.isoformat()
        return since

    @activity.defn(name=SYNC_RECORD)
    async def record(self, record: RunRecord) -> None:
        await uninterrupted(self._record(record))

    async def _record(self, record: RunRecord) -> None:
        now = utcnow()
        async with self._sessions() as session, session.begin():
            run = await session.get(SyncRun, record.run_id, with_for_update=True)
            if run is None:
                raise ApplicationError(
                    f"sync run {record.run_id} has no record", non_retryable=True
                )
            finished = SyncStatus(run.status) in TERMINAL_SYNC_STATUSES
            status_changed = (
                record.status is not None and not finished and run.status != record.status.value
            )
            if record.status is not None and not finished:
                run.status = record.status.value
                if record.status == SyncStatus.RUNNING and run.started_at is None:
                    run.started_at = now
                if record.status in TERMINAL_SYNC_STATUSES:
                    run.finished_at = now
                    run.current_module = None
            if record.current_module is not None and not finished:
                run.current_module = record.current_module
            if record.error_message is not None:
                run.error_message = record.error_message
            reconciled: LogLine | None = None
            if record.module is not None and record.module_progress is not None:
                progress = record.module_progress
                row = await self._module_row(session, record.run_id, record.module)
                row.status = progress.status.value
                row.error = progress.error
                row.updated_at = now
                # Counts from the committed pages, which the workflow may not have seen all of.
                committed = progress_of(row)
                entry = asdict(committed) | {"status": committed.status.value}
                entry.pop("cursor", None)
                modules = dict(run.progress.get("modules", {}))
                modules[record.module] = entry
                run.progress = {**run.progress, "modules": modules}
                if progress.status == ModuleStatus.DONE:
                    reconciled = self._reconcile(run, row)
            if record.cursor_since is not None and record.module is not None:
                await self._commit_cursor(session, run, record.module, record.cursor_since)
            lines: list[LogLine] = []
            if record.log_message is not None:
                lines.append(
                    LogLine(record.log_level or "info", record.module, record.log_message,
                            record.log_metadata)
                )  # fmt: skip
            if reconciled is not None:
                lines.append(reconciled)
            for line in lines:
                session.add(
                    SyncRunLog(run_id=record.run_id, at=now, level=line.level, module=line.module,
                               message=line.message, metadata_=line.metadata)
                )  # fmt: skip
            await self._record_events(session, run, record, status_changed, lines, now)

    def _reconcile(self, run: SyncRun, row: SyncRunModule) -> LogLine | None:
        """Record a done module's rows received against the upstream's total in the run's
        progress; its log line (a warning, in the worker's log too, on a mismatch)."""
        found = reconciliation_of(row)
        if found is None:
            return None
        reconciliation = dict(run.progress.get("reconciliation", {}))
        if reconciliation.get(row.module) == found:
            return None  # recorded by an earlier attempt
        reconciliation[row.module] = found
        run.progress = {**run.progress, "reconciliation": reconciliation}
        if found["matched"]:
            level = "info"
            message = f"reconciliation: {found['received']} rows received, as upstream reported"
        else:
            level = "warn"
            message = (
                f"reconciliation mismatch: {found['received']} rows received, upstream reported "
                f"{found['upstream']}"
            )
            activity.logger.warning(
                "sync run %s, %s: %s", run.id, row.module, message, extra={"reconciliation": found}
            )
        return LogLine(level, row.module, message, {"reconciliation": found})

    async def _record_events(
        self,
        session: AsyncSession,
        run: SyncRun,
        record: RunRecord,
        status_changed: bool,
        lines: list[LogLine],
        now: datetime,
    ) -> None:
        """The record's events, last in its transaction: status, module progress, log lines."""
        topic = sync_run_topic(run.id)
        if status_changed:
            await append_run_status(session, run)
        if record.module is not None and record.module_progress is not None:
            entry = dict(run.progress.get("modules", {}).get(record.module, {}))
            await append_event(
                session,
                topic,
                "sync_run.module",
                {"run_id": run.id, "module": record.module, "current_module": run.current_module,
                 "progress": entry},
            )  # fmt: skip
        for line in lines:
            await append_event(
                session,
                topic,
                "sync_run.log",
                {"run_id": run.id, "level": line.level, "module": line.module,
                 "message": line.message, "metadata": line.metadata, "at": now.isoformat()},
            )  # fmt: skip

    async def _commit_cursor(
        self, session: AsyncSession, run: SyncRun, module: str, since: str
    ) -> None:
        """Move the module's cursor forward to `since`.

        A cursor reset after the run was created stays as it is; a reset cursor moves only
        with an incremental run, the one kind that read the module's whole history.
        """
        value = datetime.fromisoformat(since)
        cursor = await session.get(SyncCursor, (run.company_id, module), with_for_update=True)
        if cursor is None:
            session.add(
                SyncCursor(
                    company_id=run.company_id, module=module, updated_since=value, run_id=run.id
                )
            )
            return
        if cursor.reset_at is not None and run.created_at < cursor.reset_at:
            return
        if cursor.updated_since is None:
            moves = run.mode == SyncMode.INCREMENTAL.value
        else:
            moves = cursor.updated_since < value
        if moves:
            await session.execute(
                update(SyncCursor)
                .where(SyncCursor.company_id == run.company_id, SyncCursor.module == module)
                .values(updated_since=value, run_id=run.id, updated_at=utcnow())
            )
