"""The Replicate emulator as a real child process, and a webhook receiver in a thread.

Durations are shortened through the emulator's environment so a whole lifecycle takes well
under a second; tests wait with deadlines and check no timings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.processes import free_port
from tests.emulators.support import RETRY_DELAYS, TOKEN, WebhookReceiver, running_emulator

ROOT = Path(__file__).resolve().parents[2]
EMULATOR_ENV = {
    # Explicitly none, even if the developer's shell exports one for the dev stack.
    "REPLICATE_EMULATOR_STATE_FILE": "",
    "REPLICATE_EMULATOR_API_TOKEN": TOKEN,
    "REPLICATE_EMULATOR_STARTING_SECONDS": "0.2",
    "REPLICATE_EMULATOR_PROCESSING_SECONDS": "0.4",
    "REPLICATE_EMULATOR_TRAINING_PROCESSING_SECONDS": "0.6",
    "REPLICATE_EMULATOR_WEBHOOK_RETRY_DELAYS": json.dumps(RETRY_DELAYS),
    "REPLICATE_EMULATOR_WEBHOOK_TIMEOUT_SECONDS": "2",
}


@pytest.fixture(scope="session")
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def emulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_dir = tmp_path_factory.mktemp("emulator-logs")
    with running_emulator("emulators.replicate", EMULATOR_ENV, log_dir) as url:
        yield url


@pytest.fixture
def api(emulator_url: str) -> Iterator[httpx.Client]:
    """An authenticated client; global faults are cleared after each test."""
    with httpx.Client(
        base_url=emulator_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15
    ) as client:
        yield client
        client.delete("/_emulator/faults").raise_for_status()


@pytest.fixture(scope="session")
def webhook_secret(emulator_url: str) -> str:
    response = httpx.get(
        f"{emulator_url}/v1/webhooks/default/secret",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    response.raise_for_status()
    secret: str = response.json()["key"]
    return secret
