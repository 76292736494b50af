"""The baseline of bench/sync_runs.py: the same sync as SyncRunWorkflow without Temporal.

A plain asyncio loop in the bench's own process pages every view with `ErpClient` and upserts
each page with `upsert_items` in its own transaction, `concurrency` views at once, into a freshly
migrated database. What it costs against the workflow is the orchestration's overhead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import utcnow
from devstack.stack import ERP_COMPANY_TOKENS
from sync_modules.base import SyncModule
from sync_modules.erp_client import ErpClient
from sync_modules.registry import all_modules
from sync_modules.store import upsert_items


@dataclass
class PlainResult:
    rows: int = 0  # written + skipped
    written: int = 0
    skipped: int = 0
    errors: int = 0
    pages: int = 0
    wall_s: float = 0.0
    per_module: dict[str, int] = field(default_factory=dict)


async def plain_sync(
    *,
    erp_url: str,
    database_url: str,
    company: str,
    page_size: int,
    concurrency: int,
    start_date: str,
    end_date: str,
    within: float,
    on_done: Callable[[], object] | None = None,
) -> PlainResult:
    """Sync every module of `company` once; `within` bounds the whole sync (TimeoutError).

    `on_done` is called as soon as the last page is stored, before the connections close (a
    CPU meter must read PostgreSQL's backends while they are still alive).
    """
    # Alembic's env may run its own event loop: keep it off this one.
    await asyncio.to_thread(upgrade, database_url)
    engine = make_engine(database_url, pool_size=max(2, concurrency))
    sessions = make_sessionmaker(engine)
    run_id = f"plain-{uuid.uuid4().hex[:12]}"
    result = PlainResult()
    slots = asyncio.Semaphore(max(1, concurrency))
    limits = httpx.Limits(max_connections=max(4, concurrency * 2))
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits) as http:
            erp = ErpClient(http, base_url=erp_url, tokens=ERP_COMPANY_TOKENS)

            async def one(module: SyncModule) -> None:
                async with slots:
                    cursor: str | None = None
                    total = 0
                    while True:
                        page = await erp.page(
                            company,
                            module.view,
                            cursor=cursor,
                            limit=page_size,
                            start_date=start_date,
                            end_date=end_date,
                        )
                        async with sessions() as session, session.begin():
                            stored = await upsert_items(
                                session, module, company, page.items, run_id=run_id, now=utcnow()
                            )
                        result.written += stored.written
                        result.skipped += stored.skipped
                        result.errors += stored.errors
                        result.pages += 1
                        total += stored.written + stored.skipped
                        if page.next_cursor is None:
                            break
                        cursor = page.next_cursor
                    result.per_module[module.name] = total

            started = time.perf_counter()
            await asyncio.wait_for(
                asyncio.gather(*(one(m) for m in all_modules().values())), timeout=within
            )
            result.wall_s = time.perf_counter() - started
            if on_done is not None:
                on_done()
    finally:
        await engine.dispose()
    result.rows = result.written + result.skipped
    return result
