"""End-to-end harness: the real dev server, API under uvicorn, a worker and the provider
emulators (Replicate, fal.ai, KIE.ai) as separate processes talking HTTP on loopback.

Every test runs twice: on SQLite with local storage, and on PostgreSQL with S3 (boto3 against
moto's server; both reached through TCP proxies that can play an outage); a test marked
`LOCAL_ONLY` runs on
the first only. Ports are free ports, state
lives in a temp dir, processes stop by PID.
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
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.engine import make_url
from temporalio.client import Client

from devstack.postgres import PostgresServer
from devstack.s3 import S3Server
from devstack.stack import Stack, StackConfig
from devstack.tcp_proxy import TcpProxy
from providers import fal, kie
from tests.conftest import E2E_VARIANTS
from tests.e2e.dashboard_support import (  # noqa: F401 (the browser tests' fixtures and hook)
    browser,
    chromium,
    page,
    pytest_runtest_makereport,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

KEYS = {"alice": "alice-key", "bob": "bob-key", "admin": "admin-key"}
E2E_BUCKET = "autosync-e2e"

# Fast lifecycles so a job takes about a second; polls every second.
E2E_ENV = {
    "POLL_INTERVAL_SECONDS": "1.5",
    # Admission runs as in production (it is on by default); its caps are tested on a stack
    # of their own (test_queue_controls.py). Here no user's cap may bind: the bulk test holds
    # 500 of one user's jobs at the provider at once.
    "MAX_ACTIVE_JOBS_PER_USER": "1000",
    "REPLICATE_WEBHOOK_EVENTS": "start,completed",
    "REPLICATE_EMULATOR_STARTING_SECONDS": "0.2",
    "REPLICATE_EMULATOR_PROCESSING_SECONDS": "0.4",
    "REPLICATE_EMULATOR_TRAINING_PROCESSING_SECONDS": "1.0",
    "FAL_EMULATOR_QUEUE_SECONDS": "0.2",
    "FAL_EMULATOR_RUN_SECONDS": "0.4",
    "FAL_EMULATOR_WEBHOOK_RETRY_DELAYS": "[0.2, 0.5]",
    "KIE_EMULATOR_WAITING_SECONDS": "0.1",
    "KIE_EMULATOR_QUEUING_SECONDS": "0.1",
    "KIE_EMULATOR_GENERATING_SECONDS": "0.4",
    "KIE_EMULATOR_VIDEO_GENERATING_SECONDS": "0.6",
    "KIE_EMULATOR_CALLBACK_RETRY_DELAYS": "[0.2, 0.5]",
    # ~125 rows per view and month, pages of 50: a month is a few pages per module.
    "ERP_EMULATOR_ROWS_PER_VIEW": "3000",
    # A pinned window (2024 and 2025; the default rolls with the calendar): the tests name
    # months of it, and an incremental run after a period run finds only rows touched since.
    "ERP_EMULATOR_DATA_START": "2024-01-01",
    "SYNC_PAGE_SIZE": "50",
    # The upstream limit, for all runs and workers together: 10 requests/s.
    "SYNC_MIN_INTERVAL_SECONDS": "0.1",
    "SYNC_CONCURRENCY": "2",
    "SYNC_MAX_RETRIES": "2",
    "MAX_ENRICH_PER_RUN": "5",
    # Recovery: every job is settled at once; the schedule stays out of the tests' way.
    "RECOVERY_MIN_AGE_MINUTES": "0",
    "RECOVERY_INTERVAL_MINUTES": "1440",
    # Tests gather dozens of requests on one key; the limit itself is tested on a small app.
    "API_RATE_LIMIT_PER_SECOND": "0",
    # Emulator outputs are a few KB: 1 MiB lets a test send an oversized one cheaply.
    "MAX_OUTPUT_BYTES": str(1024 * 1024),
}


@dataclass
class E2E:
    stack: Stack
    variant: str
    temporal: Client
    # S3 stacks reach moto through this proxy, so a test can take storage away (`down()`).
    s3_proxy: TcpProxy | None = None
    s3: S3Server | None = None
    # PostgreSQL stacks reach their database through this one (a database outage: `down()`).
    pg_proxy: TcpProxy | None = None

    def api(self, user: str = "alice") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.stack.api_url,
            headers={"Authorization": f"Bearer {KEYS[user]}"},
            timeout=30.0,
        )

    def emulator(self) -> httpx.AsyncClient:
        url = self.stack.provider_url("replicate")
        assert url is not None
        return httpx.AsyncClient(base_url=url, timeout=30.0)

    def provider_emulator(self, provider: str) -> httpx.AsyncClient:
        """The fal or KIE emulator, with its API key (its `/_emulator/*` routes need none)."""
        url = self.stack.provider_url(provider)
        auth = f"Key {fal.EMULATOR_KEY}" if provider == "fal" else f"Bearer {kie.EMULATOR_KEY}"
        assert url is not None
        return httpx.AsyncClient(base_url=url, headers={"Authorization": auth}, timeout=30.0)


VARIANTS = list(E2E_VARIANTS)
# For tests whose subject (a provider's protocol, a workflow path) doesn't depend on the
# database or the storage: the first stack only. The session's stacks stay shared: pytest
# groups tests by the fixture's parameter index, and this is index 0 of both lists.
LOCAL_ONLY = pytest.mark.parametrize("e2e", VARIANTS[:1], indirect=True)


@pytest.fixture(scope="session", params=VARIANTS)
async def e2e(
    request: pytest.FixtureRequest, postgres: PostgresServer | None
) -> AsyncIterator[E2E]:
    variant: str = request.param
    tmp = Path(tempfile.mkdtemp(prefix=f"autosync-e2e-{variant}-"))
    s3: S3Server | None = None
    proxy: TcpProxy | None = None
    pg_proxy: TcpProxy | None = None
    kw: dict[str, object] = {}
    if variant == "postgres-s3":
        if postgres is None:
            pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
        s3 = S3Server()
        s3.start()
        s3.create_bucket(E2E_BUCKET)
        proxy = TcpProxy(s3.endpoint_url).start()
        database_url = postgres.create_database()
        pg_proxy = TcpProxy(database_url).start()
        kw = dict(
            database_url=_through(database_url, pg_proxy),
            storage_backend="s3",
            s3_endpoint_url=proxy.url,
            s3_bucket=E2E_BUCKET,
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
        yield E2E(
            stack=stack, variant=variant, temporal=client, s3_proxy=proxy, s3=s3, pg_proxy=pg_proxy
        )
    finally:
        stack.stop()
        if proxy is not None:
            proxy.stop()
        if pg_proxy is not None:
            pg_proxy.stop()
        if s3 is not None:
            s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _through(database_url: str, proxy: TcpProxy) -> str:
    """`database_url` with the proxy's address in place of the server's."""
    port = urlsplit(proxy.url).port
    return make_url(database_url).set(host="127.0.0.1", port=port).render_as_string(False)


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
