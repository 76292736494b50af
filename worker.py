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
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.media import MediaActivities
from activities.sync import SyncActivities
from core.db import make_engine, make_sessionmaker
from core.settings import Settings, get_settings
from providers.registry import PROVIDER_NAMES, build_provider
from storage.factory import build_storage
from sync_modules.erp_client import ErpClient
from workflows.media_job import MediaJobWorkflow
from workflows.sync_run import SyncRunWorkflow

log = logging.getLogger("autosync.worker")


@asynccontextmanager
async def build_workers(settings: Settings, client: Client) -> AsyncIterator[list[Worker]]:
    """The workers of this process, with their long-lived clients (DB pool, HTTP, storage).

    Media jobs, sync runs and the ERP page activities each have a task queue; the ERP one
    carries the upstream rate limit, enforced by the server for every worker together.
    """
    engine = make_engine(settings.database_url, pool_size=20)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0), limits=limits) as http:
        sessions = make_sessionmaker(engine)
        activities = MediaActivities(
            sessions=sessions,
            storage=build_storage(settings),
            providers={name: build_provider(name, settings, http) for name in PROVIDER_NAMES},
            http=http,
        )
        sync = SyncActivities(
            sessions=sessions,
            erp=ErpClient(
                http,
                base_url=settings.erp_base_url,
                tokens=settings.erp_tokens,
                min_interval=settings.sync_min_interval_seconds,
            ),
        )
        runner = (
            SandboxedWorkflowRunner() if settings.worker_sandboxed else UnsandboxedWorkflowRunner()
        )
        media = Worker(
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
            workflow_runner=runner,
        )
        sync_runs = Worker(
            client,
            task_queue=settings.sync_task_queue,
            workflows=[SyncRunWorkflow],
            activities=[sync.record, sync.updated_since, sync.open_run],
            max_cached_workflows=settings.worker_max_cached_workflows,
            workflow_runner=runner,
        )
        # An activity makes up to `sync_pages_per_activity` requests, so the queue's activities
        # per second are the request limit divided by that.
        interval = settings.sync_min_interval_seconds * settings.sync_pages_per_activity
        erp_pages = Worker(
            client,
            task_queue=settings.erp_task_queue,
            activities=[sync.fetch_pages],
            max_concurrent_activities=max(1, settings.sync_concurrency) * 2,
            max_task_queue_activities_per_second=(1.0 / interval) if interval > 0 else None,
            # A canceled run reaches its page activities through heartbeat answers.
            max_heartbeat_throttle_interval=timedelta(seconds=1),
        )
        try:
            yield [media, sync_runs, erp_pages]
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
    async with build_workers(settings, client) as workers, AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        log.info(
            "worker polling task queue %s at %s",
            ", ".join(repr(w.task_queue) for w in workers),
            settings.temporal_address,
        )
        await stop.wait()
        log.info("shutting down: finishing running activities")


if __name__ == "__main__":
    asyncio.run(main())
