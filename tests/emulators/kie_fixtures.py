"""Fixtures of the KIE tests, loaded with `pytest_plugins = ["tests.emulators.kie_fixtures"]`.

The emulator runs as a real child process on a free port; durations are shortened through its
environment so a task's whole lifecycle takes well under a second. Tests wait with deadlines
and check no timings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from providers.kie import KieProvider
from tests.emulators.kie_support import CALLBACK_RETRY_DELAYS, HMAC_KEY, KIE_KEY
from tests.emulators.support import running_emulator

KIE_EMULATOR_ENV = {
    "KIE_EMULATOR_API_KEY": KIE_KEY,
    "KIE_EMULATOR_WEBHOOK_HMAC_KEY": HMAC_KEY,
    "KIE_EMULATOR_PUBLIC_URL": "",
    "KIE_EMULATOR_WAITING_SECONDS": "0.1",
    "KIE_EMULATOR_QUEUING_SECONDS": "0.1",
    "KIE_EMULATOR_GENERATING_SECONDS": "0.3",
    "KIE_EMULATOR_VIDEO_GENERATING_SECONDS": "0.4",
    "KIE_EMULATOR_FILE_TTL_SECONDS": "86400",
    "KIE_EMULATOR_CALLBACK_RETRY_DELAYS": json.dumps(CALLBACK_RETRY_DELAYS),
    "KIE_EMULATOR_CALLBACK_TIMEOUT_SECONDS": "2",
}


@pytest.fixture(scope="session")
def kie_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_dir = tmp_path_factory.mktemp("kie-emulator-logs")
    with running_emulator("emulators.kie", KIE_EMULATOR_ENV, log_dir) as url:
        yield url


@pytest.fixture
def kie_api(kie_url: str) -> Iterator[httpx.Client]:
    """An authenticated client; global faults are cleared after each test."""
    with httpx.Client(
        base_url=kie_url, headers={"Authorization": f"Bearer {KIE_KEY}"}, timeout=15
    ) as client:
        yield client
        client.delete("/_emulator/faults").raise_for_status()


@pytest.fixture
async def kie_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
        yield http


@pytest.fixture
def kie_provider(kie_http: httpx.AsyncClient, kie_url: str) -> KieProvider:
    return KieProvider(kie_http, base_url=kie_url, api_key=KIE_KEY)
