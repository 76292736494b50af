"""Sync module control on SQLite and PostgreSQL: where a reset cursor makes the next run start,
which runs may move it, and the reconciliation of rows received against the upstream's total.
The ERP is a scripted stand-in; the activities run in Temporal's activity environment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.sync import SyncActivities
from core.contracts import ModuleProgress, ModuleStatus, PageRequest, RunRecord, SyncMode
from core.models import SyncCursor, SyncRun, SyncRunLog
from core.sync_runs import cursors
from core.sync_runs.store import new_run
from sync_modules.erp_client import ErpClient, Page, reported_total

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def sessions(
    sessions_each_db: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    return sessions_each_db


class ScriptedErp(ErpClient):
    """Pages of `rows` rows while they last; each page reports `total` (None: no total)."""

    def __init__(self, rows: int, total: int | None, page_size: int = 4) -> None:
        # No HTTP client: `page` is all the activities call (enrichment is off).
        self.rows, self.total, self.page_size = rows, total, page_size
        self.calls: list[dict[str, Any]] = []

    async def page(self, company_id: str, view: str, **kw: Any) -> Page:
        self.calls.append(kw)
        start = int(kw["cursor"] or 0)
        end = min(self.rows, start + self.page_size)
        items = [
            {"id": f"V{i:09d}", "updated_at": T0.isoformat(), "data_venda": "2025-12-01"}
            for i in range(start, end)
        ]
        return Page(items, str(end) if end < self.rows else None, self.total)


async def add_run(
    sessions: async_sessionmaker[AsyncSession], mode: SyncMode, modules: list[str]
) -> str:
    async with sessions() as session:
        run = new_run(company_id="acme", mode=mode, modules=modules, triggered_by="root")
        run.status = "RUNNING"
        session.add(run)
        await session.commit()
        return run.id


async def finish(sessions: async_sessionmaker[AsyncSession], run_id: str) -> None:
    async with sessions() as session:
        run = await session.get(SyncRun, run_id)
        assert run is not None
        run.status = "DONE"
        await session.commit()


async def walk_module(acts: SyncActivities, run_id: str, module: str = "vendas") -> None:
    """Every page of the module, then its end as the workflow records it."""
    progress = ModuleProgress(status=ModuleStatus.RUNNING)
    while not progress.done:
        request = PageRequest(
            run_id=run_id, company_id="acme", module=module, page=progress.pages,
            cursor=progress.cursor, page_size=4, max_pages=2,
        )  # fmt: skip
        progress = await ActivityEnvironment().run(acts.fetch_pages, request)
    done = RunRecord(
        run_id=run_id, module=module, module_progress=ModuleProgress(status=ModuleStatus.DONE),
        log_level="info", log_message="module done",
    )  # fmt: skip
    await ActivityEnvironment().run(acts.record, done)
    await ActivityEnvironment().run(acts.record, done)  # a retried record changes nothing


async def read_run(sessions: async_sessionmaker[AsyncSession], run_id: str) -> SyncRun:
    async with sessions() as session:
        run = await session.get(SyncRun, run_id)
        assert run is not None
        return run


async def run_logs(sessions: async_sessionmaker[AsyncSession], run_id: str) -> list[SyncRunLog]:
    async with sessions() as session:
        rows = await session.scalars(select(SyncRunLog).where(SyncRunLog.run_id == run_id))
        return list(rows.all())


@pytest.mark.parametrize(("total", "matched"), [(10, True), (12, False)])
async def test_a_done_module_records_rows_received_against_the_upstream_total(
    sessions: async_sessionmaker[AsyncSession], total: int, matched: bool
) -> None:
    acts = SyncActivities(sessions=sessions, erp=ScriptedErp(rows=10, total=total))
    run_id = await add_run(sessions, SyncMode.PERIOD, ["vendas"])
    await walk_module(acts, run_id)
    run = await read_run(sessions, run_id)
    found = {"upstream": total, "received": 10, "matched": matched}
    assert run.progress["reconciliation"] == {"vendas": found}
    assert run.progress["modules"]["vendas"]["received"] == 10
    lines = [log for log in await run_logs(sessions, run_id) if "reconciliation" in log.message]
    assert [(log.level, log.metadata_) for log in lines] == [
        ("info" if matched else "warn", {"reconciliation": found})
    ]


async def test_no_reconciliation_when_the_upstream_reports_no_total(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    acts = SyncActivities(sessions=sessions, erp=ScriptedErp(rows=6, total=None))
    run_id = await add_run(sessions, SyncMode.PERIOD, ["vendas"])
    await walk_module(acts, run_id)
    run = await read_run(sessions, run_id)
    assert "reconciliation" not in run.progress
    assert run.progress["modules"]["vendas"]["received"] == 6


def test_the_total_comes_from_the_body_or_the_header() -> None:
    assert reported_total({"total": 7}, httpx.Headers({"X-Total-Count": "9"})) == 7
    assert reported_total({}, httpx.Headers({"X-Total-Count": "9"})) == 9
    assert reported_total({"total": "many"}, httpx.Headers()) is None
    assert reported_total({"total": True}, httpx.Headers({"X-Total-Count": "-1"})) is None


async def test_a_reset_module_reads_its_whole_history_and_the_others_their_cursors(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    acts = SyncActivities(sessions=sessions, erp=ScriptedErp(rows=0, total=0))
    async with sessions() as session:
        for module in ("vendas", "estoque"):
            session.add(SyncCursor(company_id="acme", module=module, updated_since=T0))
        await session.commit()
    async with sessions() as session:
        reset = await cursors.reset_cursor(session, "acme", "estoque", "root")
    assert reset.state == cursors.CursorState.RESET and reset.reset_by == "root"
    since = await ActivityEnvironment().run(
        acts.updated_since, "acme", ["vendas", "estoque", "contas_pagar"]
    )
    assert set(since) == {"vendas", "contas_pagar"}  # estoque: no `updated_since` at all
    assert datetime.fromisoformat(since["vendas"]) == T0
    assert datetime.fromisoformat(since["contas_pagar"]) < datetime.now(UTC) - timedelta(days=29)
    async with sessions() as session:
        listed = {c.module: c for c in await cursors.list_cursors(session, "acme")}
    assert listed["vendas"].state == cursors.CursorState.SYNCED
    assert listed["vendas"].updated_since == T0
    assert listed["estoque"].state == cursors.CursorState.RESET
    assert listed["contas_pagar"].state == cursors.CursorState.NEVER_SYNCED


async def test_only_an_incremental_run_made_after_the_reset_moves_a_reset_cursor(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    acts = SyncActivities(sessions=sessions, erp=ScriptedErp(rows=0, total=0))
    before_reset = await add_run(sessions, SyncMode.INCREMENTAL, ["estoque"])
    await finish(sessions, before_reset)
    async with sessions() as session:
        await cursors.reset_cursor(session, "acme", "estoque", "root")
    period = await add_run(sessions, SyncMode.PERIOD, ["estoque"])
    await finish(sessions, period)
    incremental = await add_run(sessions, SyncMode.INCREMENTAL, ["estoque"])

    async def commit(run_id: str) -> str | None:
        """The run that moved the cursor after `run_id` committed it; "reset" if none."""
        record = RunRecord(run_id=run_id, module="estoque", cursor_since=T0.isoformat())
        await ActivityEnvironment().run(acts.record, record)
        async with sessions() as session:
            cursor = await session.get(SyncCursor, ("acme", "estoque"))
            assert cursor is not None
            return "reset" if cursor.updated_since is None else cursor.run_id

    assert await commit(before_reset) == "reset"  # made before the reset
    assert await commit(period) == "reset"  # read one period only
    assert await commit(incremental) == incremental


async def test_a_reset_is_refused_while_a_run_is_going_and_touches_one_module(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        for module in ("vendas", "estoque"):
            session.add(SyncCursor(company_id="acme", module=module, updated_since=T0))
        await session.commit()
    running = await add_run(sessions, SyncMode.INCREMENTAL, ["vendas"])
    async with sessions() as session:
        with pytest.raises(cursors.RunInProgress) as refused:
            await cursors.reset_cursor(session, "acme", "vendas", "root")
    assert refused.value.run_id == running
    await finish(sessions, running)
    async with sessions() as session:
        with pytest.raises(KeyError, match="compras"):
            await cursors.reset_cursor(session, "acme", "compras", "root")
        await cursors.reset_cursor(session, "acme", "vendas", "root")
    async with sessions() as session:
        rows = {c.module: c.updated_since for c in (await session.scalars(select(SyncCursor)))}
    assert rows == {"vendas": None, "estoque": T0}
