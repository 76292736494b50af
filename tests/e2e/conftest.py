"""End-to-end harness: the real dev server, API under uvicorn, a worker and the Replicate
emulator as separate processes talking HTTP on loopback.

Every test runs twice: on SQLite with local storage, and on PostgreSQL with S3 (boto3 against
moto's server). Ports are free ports, state lives in a temp dir, processes stop by PID.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from devstack.postgres import PostgresServer
from devstack.s3 import S3Server
from devstack.stack import Stack, StackConfig

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

KEYS = {"alice": "alice-key", "bob": "bob-key", "admin": "admin-key"}

# Fast lifecycles so a job takes about a second; polls every second.
E2E_ENV = {
    "POLL_INTERVAL_SECONDS": "1.5",
    "REPLICATE_WEBHOOK_EVENTS": "start,completed",
    "REPLICATE_EMULATOR_STARTING_SECONDS": "0.2",
    "REPLICATE_EMULATOR_PROCESSING_SECONDS": "0.4",
    "REPLICATE_EMULATOR_TRAINING_PROCESSING_SECONDS": "1.0",
    # ~125 rows per view and month, pages of 50: a month is a few pages per module.
    "ERP_EMULATOR_ROWS_PER_VIEW": "3000",
    "SYNC_PAGE_SIZE": "50",
    # The upstream limit, for all runs and workers together: 10 requests/s.
    "SYNC_MIN_INTERVAL_SECONDS": "0.1",
    "SYNC_CONCURRENCY": "2",
    "SYNC_MAX_RETRIES": "2",
    "MAX_ENRICH_PER_RUN": "5",
}


@dataclass
class E2E:
    stack: Stack
    variant: str
    temporal: Client

    def api(self, user: str = "alice") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.stack.api_url,
            headers={"Authorization": f"Bearer {KEYS[user]}"},
            timeout=30.0,
        )

    def emulator(self) -> httpx.AsyncClient:
        assert self.stack.emulator_url is not None
        return httpx.AsyncClient(base_url=self.stack.emulator_url, timeout=30.0)


@pytest.fixture(scope="session", params=["sqlite-local", "postgres-s3"])
async def e2e(
    request: pytest.FixtureRequest, postgres: PostgresServer | None
) -> AsyncIterator[E2E]:
    variant: str = request.param
    tmp = Path(tempfile.mkdtemp(prefix=f"autosync-e2e-{variant}-"))
    s3: S3Server | None = None
    kw: dict[str, object] = {}
    if variant == "postgres-s3":
        if postgres is None:
            pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
        s3 = S3Server()
        s3.start()
        s3.create_bucket("autosync-e2e")
        kw = dict(
            database_url=postgres.create_database(),
            storage_backend="s3",
            s3_endpoint_url=s3.endpoint_url,
            s3_bucket="autosync-e2e",
        )
    config = StackConfig.ephemeral(
        tmp,
        api_keys="alice-key=alice,bob-key=bob,admin-key=root:admin",
        env=dict(E2E_ENV),
        log_dir=ARTIFACTS / "e2e-logs" / variant,
        **kw,
    )
    stack = Stack(config)
    try:
        stack.start()
        client = await Client.connect(stack.temporal_address)
        yield E2E(stack=stack, variant=variant, temporal=client)
    finally:
        stack.stop()
        if s3 is not None:
            s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)


async def wait_for_status(
    api: httpx.AsyncClient, path: str, statuses: set[str], within: float
) -> dict[str, Any]:
    """GET `path` until its `status` is one of `statuses` (an error after `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        response = await api.get(path)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never reached {statuses}: {body}")
        await asyncio.sleep(0.1)
