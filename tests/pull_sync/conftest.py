"""The pull-client emulator as a real child process on a free port, shared by the module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.emulators.support import running_emulator

EMULATOR_ENV = {
    "PULL_CLIENT_EMULATOR_SEED_RECORDS": "0",
    # Past the puller's timeout in these tests (PULL_SYNC_TIMEOUT_SECONDS is shortened too).
    "PULL_CLIENT_EMULATOR_SLOW_SECONDS": "5",
    "PULL_CLIENT_EMULATOR_HUGE_BYTES": str(2 * 1024 * 1024),
    "PULL_CLIENT_EMULATOR_MAX_PAGE_SIZE": "1000",
}


@pytest.fixture(scope="session")
def pull_client_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_dir = tmp_path_factory.mktemp("pull-client-emulator-logs")
    with running_emulator("emulators.pull_client", EMULATOR_ENV, log_dir) as url:
        yield url


@pytest.fixture
def control(pull_client_url: str) -> Iterator[httpx.Client]:
    """The emulator's control client; the emulator is reset before each test."""
    with httpx.Client(base_url=pull_client_url, timeout=15) as client:
        client.post("/_emulator/reset").raise_for_status()
        yield client
