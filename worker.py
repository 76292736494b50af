"""The worker: runs MediaJobWorkflow and its activities. `python worker.py` (settings from env)."""

from __future__ import annotations

import sys

# The workflow sandbox re-imports the workflow modules for every workflow it starts: without
# cached bytecode each of those imports compiles the source again (a quarter of the worker's
# CPU under load when PYTHONDONTWRITEBYTECODE is set). Keep .pyc files for this process.
sys.dont_write_bytecode = False

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.media import MediaActivities
from core.db import make_engine, make_sessionmaker
from core.settings import Settings, get_settings
from providers.registry import PROVIDER_NAMES, build_provider
from storage.factory import build_storage
from workflows.media_job import MediaJobWorkflow

log = logging.getLogger("autosync.worker")


@asynccontextmanager
async def build_worker(settings: Settings, client: Client) -> AsyncIterator[Worker]:
    """A worker with its long-lived clients (DB pool, HTTP, storage) opened and closed here."""
    engine = make_engine(settings.database_url, pool_size=20)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0), limits=limits) as http:
        activities = MediaActivities(
            sessions=make_sessionmaker(engine),
            storage=build_storage(settings),
            providers={name: build_provider(name, settings, http) for name in PROVIDER_NAMES},
            http=http,
        )
        worker = Worker(
            client,
            task_queue=settings.media_task_queue,
            workflows=[MediaJobWorkflow],
            activities=[
                activities.submit,
                activities.poll,
                activities.cancel,
                activities.record,
                activities.store_outputs,
            ],
            max_cached_workflows=settings.worker_max_cached_workflows,
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            max_concurrent_local_activities=settings.worker_max_concurrent_activities,
            # Cancellation reaches an activity only with a heartbeat's answer: a copy being
            # cancelled should stop within seconds, not the default 0.8 x heartbeat timeout.
            max_heartbeat_throttle_interval=timedelta(seconds=2),
            workflow_runner=(
                SandboxedWorkflowRunner()
                if settings.worker_sandboxed
                else UnsandboxedWorkflowRunner()
            ),
        )
        try:
            yield worker
        finally:
            await engine.dispose()


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per provider call is noise
    settings = get_settings()
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_worker(settings, client) as worker:
        async with worker:
            log.info(
                "worker polling task queue %r at %s",
                settings.media_task_queue,
                settings.temporal_address,
            )
            await stop.wait()
            log.info("shutting down: finishing running activities")


if __name__ == "__main__":
    asyncio.run(main())
