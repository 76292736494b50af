"""Database engines for the app DB: SQLite by default, PostgreSQL by URL.

Settings hold a plain URL (`sqlite:///data/app.db`, `postgresql://…`); the drivers are chosen
here so that one URL serves the async app (aiosqlite / psycopg) and Alembic (sqlite3 / psycopg).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, and_, event, or_
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

T = TypeVar("T")
S = TypeVar("S", bound=Select[Any])


def _url(database_url: str, *, is_async: bool) -> URL:
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        driver = "aiosqlite" if is_async else "pysqlite"
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    elif backend in ("postgresql", "postgres"):
        driver = "psycopg"
        url = url.set(drivername="postgresql")
    else:
        raise ValueError(f"DATABASE_URL {database_url!r}: only sqlite and postgresql are supported")
    return url.set(drivername=f"{url.get_backend_name()}+{driver}")


def sync_url(database_url: str) -> str:
    return _url(database_url, is_async=False).render_as_string(hide_password=False)


def libpq_dsn(database_url: str) -> str | None:
    """A plain libpq connection string for PostgreSQL URLs (for LISTEN), None for SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() not in ("postgresql", "postgres"):
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def is_sqlite(database_url: str) -> bool:
    return make_url(database_url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # API and worker write the same file from different processes: WAL lets readers go on
    # during a write, and busy_timeout waits for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    url = _url(database_url, is_async=True)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def newest_first(
    query: S, created_at: Any, id_: Any, before: tuple[datetime, str] | None, limit: int
) -> S:
    """A page of `query` newest first by (`created_at`, `id_`); `before` is the (created_at,
    id) of the last row of the previous page (keyset paging: no row is skipped or repeated
    while rows are added)."""
    if before is not None:
        created, ident = before
        query = query.where(or_(created_at < created, and_(created_at == created, id_ < ident)))
    return query.order_by(created_at.desc(), id_.desc()).limit(limit)


async def uninterrupted(work: Coroutine[Any, Any, T]) -> T:
    """Run a database write to its end even if the caller is cancelled meanwhile.

    A cancel that lands between a write and its commit can leave the connection inside its
    transaction; on SQLite that transaction holds the database's only write lock, and every
    other writer waits until it times out. So the write finishes (or fails) on its own, and
    the caller's cancellation takes effect afterwards.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
