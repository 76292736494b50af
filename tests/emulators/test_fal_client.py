"""The official fal_client (1.0.3) against the emulator: every answer must parse.

fal_client has no base-URL option: it builds `https://{FAL_QUEUE_RUN_HOST}/...`, reading the
host from the environment once at import. So the emulator runs here over TLS with a
throwaway self-signed certificate, and the client runs in a child process
(`fal_client_scenario.py`) whose environment names the emulator's host and trusts that
certificate through `SSL_CERT_FILE`, which httpx honours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.fal_support import (
    FAL_KEY,
    ROOT,
    self_signed_certificate,
    start_emulator,
    trusting,
    verify_delivery,
    wait_ready,
)
from tests.emulators.support import WebhookReceiver

pytest.importorskip("fal_client")

SCENARIO_TIMEOUT = 120


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The emulator over HTTPS: its base URL and the certificate it serves."""
    directory = tmp_path_factory.mktemp("fal-tls")
    cert, key = self_signed_certificate(directory)
    process, url = start_emulator(directory, tls=(cert, key))
    with process:
        wait_ready(process, url, trusting(cert))
        yield url, cert


@pytest.fixture(scope="module")
def scenario(tls_emulator: tuple[str, Path], receiver: WebhookReceiver) -> dict[str, Any]:
    """Run the fal_client scenario once and return what it saw."""
    url, cert = tls_emulator
    hook = uuid.uuid4().hex
    env = {
        **os.environ,
        "FAL_QUEUE_RUN_HOST": url.removeprefix("https://"),
        "FAL_KEY": FAL_KEY,
        "SSL_CERT_FILE": str(cert),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.emulators.fal_client_scenario", receiver.url(hook)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen: dict[str, Any] = json.loads(done.stdout)
    seen["hook"] = hook
    return seen


def test_submit_iter_events_and_get(scenario: dict[str, Any]) -> None:
    events = scenario["events"]
    assert events[-1] == "Completed"
    assert set(events) <= {"Queued", "InProgress", "Completed"}
    images = scenario["result"]["images"]
    assert len(images) == 2 and all(i["url"].startswith("https://127.0.0.1:") for i in images)
    assert scenario["final"]["logs"] > 0
    assert "inference_time" in scenario["final"]["metrics"]


def test_subscribe(scenario: dict[str, Any]) -> None:
    assert scenario["subscribed"]["images"]
    assert "Completed" in scenario["updates"]


def test_cancel_and_errors(scenario: dict[str, Any]) -> None:
    assert scenario["cancel"] == {"position": 0, "error_type": "request_cancelled"}
    assert scenario["error"]["status_code"] == 422
    assert "prompt is too long" in scenario["error"]["message"]


def test_async_client(scenario: dict[str, Any]) -> None:
    assert scenario["async_result"]["images"]


def test_webhook_url_is_passed_through(
    scenario: dict[str, Any], tls_emulator: tuple[str, Path], receiver: WebhookReceiver
) -> None:
    url, cert = tls_emulator
    [delivery] = receiver.wait_count(scenario["hook"], 1)
    assert delivery.json["request_id"] == scenario["webhook_request_id"]
    request_id = verify_delivery(url, delivery, verify=trusting(cert))
    assert request_id == scenario["webhook_request_id"]
