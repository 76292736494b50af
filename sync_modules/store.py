"""Batch upserts of upstream rows: keyed by (company, external id), newer rows win."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from sync_modules.base import SyncModule


async def upsert_rows(
    session: AsyncSession, module: SyncModule, rows: Sequence[dict[str, Any]]
) -> tuple[int, int]:
    """Insert new rows, update changed ones; returns (written, skipped as unchanged).

    A row is skipped when the stored copy is at least as new (`upstream_updated_at`), so a
    page read twice after a crash, or out of order, never moves data backwards. The caller
    commits.
    """
    if not rows:
        return 0, 0
    table = module.table
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(list(rows))
    changing = ("business_date", "upstream_updated_at", "data", "run_id", "synced_at")
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.company_id, table.c.external_id],
        set_={name: statement.excluded[name] for name in changing},
        where=table.c.upstream_updated_at < statement.excluded.upstream_updated_at,
    )
    # RETURNING counts what was written on every backend (psycopg gives no rowcount here).
    result = await session.execute(statement.returning(table.c.external_id))
    written = len(result.all())
    return written, len(rows) - written
