"""The worker: every workflow and activity of autosync, one Worker per task queue.

`python worker.py` (settings from env). Five task queues, split by what limits them (see
`build_workers`), named here as WORKER_QUEUES names them: `media` (MediaJobWorkflow,
RecoveryWorkflow, JobBatchWorkflow and their activities; with it, the queue of the provider
pollers, one ProviderPollerWorkflow per provider and its sweep, POLLER_TASK_QUEUE), `storage`
(output copies), `sync` (SyncRunWorkflow, PruneEventsWorkflow and their record activities),
`erp` (the rate-limited sync page activities) and `pull-sync` (PullSyncCycleWorkflow,
PullSyncCleanupWorkflow and their activities). WORKER_QUEUES picks the queues this process
polls; every worker process also creates the Temporal Schedules that are missing, and a media
worker starts the provider pollers that are not running.
"""

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
from functools import partial

import httpx
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    FixedSizeSlotSupplier,
    ResourceBasedSlotConfig,
    ResourceBasedSlotSupplier,
    ResourceBasedTunerConfig,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkerTuner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.admission import AdmissionActivities
from activities.alerts import AlertActivities, alert_fetcher
from activities.bulk_jobs import BulkJobActivities
from activities.maintenance import MaintenanceActivities
from activities.media import MediaActivities
from activities.provider_poller import ProviderPollerActivities
from activities.pull_sync import PullConfig, PullSyncActivities, client_fetcher
from activities.recovery import RecoveryActivities, RecoverySweeper
from activities.retention import RetentionActivities
from activities.sync import SyncActivities
from core import pull_schedules
from core.alerts.contracts import ALERT_SCHEDULE_ID
from core.contracts import (
    PROVIDER_POLLER_WORKFLOW,
    ProviderPollerInput,
    provider_poller_workflow_id,
)
from core.db import make_engine, make_sessionmaker
from core.gc_tuning import tune_for_server
from core.logs import TEXT_FORMAT, configure_logging
from core.outbound import OutboundFetcher
from core.retention.contracts import RETENTION_SCHEDULE_ID, RetentionInput
from core.schedules import create_missing, every
from core.settings import WORKER_QUEUE_NAMES, Settings, get_settings
from core.tracing import flush_tracing, setup_tracing, temporal_interceptors, traced_transport
from providers import registry
from providers.transport import FreshConnectionsForCreates
from storage.factory import build_storage
from sync_modules.erp_client import ErpClient
from workflows.admission import AdmissionWorkflow
from workflows.alerts import AlertDeliveryWorkflow, AlertSweepWorkflow
from workflows.bulk_jobs import JobBatchWorkflow
from workflows.maintenance import PRUNE_SCHEDULE_ID, PruneEventsWorkflow
from workflows.media_job import MediaJobWorkflow
from workflows.provider_poller import ProviderPollerWorkflow
from workflows.pull_sync import PullSyncCleanupWorkflow, PullSyncCycleWorkflow
from workflows.recovery import RECOVERY_SCHEDULE_ID, RecoveryWorkflow
from workflows.retention import RetentionWorkflow
from workflows.sync_run import SyncRunWorkflow

log = logging.getLogger("autosync.worker")


def media_tuner(settings: Settings) -> WorkerTuner:
    """The media worker's slots: activities and local activities up to
    WORKER_MAX_CONCURRENT_ACTIVITIES; workflow tasks up to WORKER_MAX_CONCURRENT_WORKFLOW_TASKS
    while the CPU has room, WORKER_MIN_WORKFLOW_TASKS when it is busy. A worker that took 100
    tasks of one user's flood ran them all before anybody else's (one event loop, arrival
    order); left at the server, they take turns by priority and fairness key."""
    activities = FixedSizeSlotSupplier(settings.worker_max_concurrent_activities)
    most = settings.worker_max_concurrent_workflow_tasks
    target = settings.worker_workflow_tasks_target_cpu
    workflows: FixedSizeSlotSupplier | ResourceBasedSlotSupplier = FixedSizeSlotSupplier(most)
    if target > 0:
        workflows = ResourceBasedSlotSupplier(
            ResourceBasedSlotConfig(
                minimum_slots=min(settings.worker_min_workflow_tasks, most),
                maximum_slots=most,
                # One more slot at most every 10 ms past the minimum: a burst is not all taken
                # before the CPU reading catches up with it.
                ramp_throttle=timedelta(milliseconds=10),
            ),
            ResourceBasedTunerConfig(target_memory_usage=0.8, target_cpu_usage=target),
        )
    return WorkerTuner.create_composite(
        workflow_supplier=workflows,
        activity_supplier=activities,
        local_activity_supplier=activities,
        nexus_supplier=FixedSizeSlotSupplier(1),
    )


@asynccontextmanager
async def build_workers(settings: Settings, client: Client) -> AsyncIterator[list[Worker]]:
    """The workers of this process, with their long-lived clients (DB pool, HTTP, storage).

    Each task queue is split by what limits it: media jobs and their provider calls (I/O,
    many at once), output copies (bandwidth and memory: few at once), sync runs, and the ERP
    page activities, whose queue carries the upstream rate limit, enforced by the server for
    every worker together. WORKER_QUEUES picks which of them this process polls (all: empty).
    """
    registry.configure(settings)  # PROVIDER_MODULES; stops here on an unknown DEFAULT_PROVIDER
    chosen = set(settings.worker_queues or WORKER_QUEUE_NAMES)
    engine = make_engine(settings.database_url, pool_size=20)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    # `http` calls the APIs we configured (providers, ERP); `fetcher` fetches the URLs they
    # hand us (outputs), which may point anywhere: see core.outbound.
    async with (
        httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            # A transport of our own takes the limits; traced: a span per provider call;
            # provider creates on connections of their own (providers.transport).
            transport=traced_transport(FreshConnectionsForCreates(limits)),
        ) as http,
        OutboundFetcher.from_settings(settings) as fetcher,
        client_fetcher(settings) as pull_fetcher,  # pull-sync clients: their own URL rule
        alert_fetcher(settings) as alert_urls,  # alert URLs: ALERT_ALLOWED_ORIGINS
    ):
        sessions = make_sessionmaker(engine)
        storage = build_storage(settings)
        providers = registry.build_providers(settings, http)
        admission = AdmissionActivities(client=client, task_queue=settings.poller_task_queue)
        activities = MediaActivities(
            sessions=sessions,
            storage=storage,
            providers=providers,
            fetcher=fetcher,
            thumbnail_max_edge=settings.thumbnail_max_edge,
            settings=settings,
            on_rate_limited=admission.pause,
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
        # SIGTERM (a deploy, `make up`'s stop) lets running activities finish rather than
        # cancelling them at once: a cancelled copy or submit would be retried from scratch.
        graceful = timedelta(seconds=settings.worker_graceful_shutdown_seconds)
        runner = (
            SandboxedWorkflowRunner() if settings.worker_sandboxed else UnsandboxedWorkflowRunner()
        )
        recovery = RecoveryActivities(
            RecoverySweeper(
                sessions=sessions, storage=storage, providers=providers, temporal=client,
                fetcher=fetcher, settings=settings,
            )
        )  # fmt: skip
        pollers = ProviderPollerActivities(
            sessions=sessions,
            providers=providers,
            temporal=client,
            rate_per_second=settings.provider_poll_rate_per_second,
            concurrency=settings.provider_poll_concurrency,
            max_pages=settings.provider_poll_max_pages,
        )
        bulk = BulkJobActivities(sessions=sessions, temporal=client, settings=settings)
        media = partial(
            Worker,
            client,
            task_queue=settings.media_task_queue,
            workflows=[MediaJobWorkflow, RecoveryWorkflow, JobBatchWorkflow],
            activities=[
                activities.submit,
                activities.poll,
                activities.cancel,
                activities.record,
                activities.store_outputs,
                recovery.sweep,
                bulk.run_chunk,
                bulk.finish,
                admission.request,
                admission.release,
            ],
            max_cached_workflows=settings.worker_max_cached_workflows,
            tuner=media_tuner(settings),
            # Cancellation reaches an activity only with a heartbeat's answer: a copy being
            # cancelled should stop within seconds, not the default 0.8 x heartbeat timeout.
            max_heartbeat_throttle_interval=timedelta(seconds=2),
            workflow_runner=runner,
            graceful_shutdown_timeout=graceful,
        )
        # Polled with the media queue: a sweep (and the poller's workflow task that starts it)
        # must not queue behind thousands of job workflow tasks, or detection waits for them.
        provider_pollers = partial(
            Worker,
            client,
            task_queue=settings.poller_task_queue,
            workflows=[ProviderPollerWorkflow, AdmissionWorkflow],
            activities=[pollers.sweep, admission.ended],
            workflow_runner=runner,
            graceful_shutdown_timeout=graceful,
        )

        # Admitted jobs' creates and cancels: a queue per provider whose rate limit the server
        # enforces for every worker process together (PROVIDER_RATE_LIMITS).
        def provider_calls(name: str) -> Worker:
            rate = settings.provider_rate_limits.get(name)
            return Worker(
                client,
                task_queue=settings.provider_task_queue(name),
                activities=[activities.submit, activities.cancel],
                max_concurrent_activities=settings.worker_max_concurrent_activities,
                max_task_queue_activities_per_second=rate if rate and rate > 0 else None,
                graceful_shutdown_timeout=graceful,
            )

        # Copies stream through a temp file and S3 multipart parts: their number bounds this
        # process's memory and disk. Histories from before the storage queue still schedule
        # their copy on the media queue, which keeps the activity too.
        copies = partial(
            Worker,
            client,
            task_queue=settings.storage_task_queue,
            activities=[activities.store_outputs],
            max_concurrent_activities=settings.worker_storage_concurrency,
            max_heartbeat_throttle_interval=timedelta(seconds=2),
            graceful_shutdown_timeout=graceful,
        )
        # Housekeeping rides on the sync queue: the events prune, the retention cleanup, alerts.
        alerts = AlertActivities(
            sessions=sessions, storage=storage, fetcher=alert_urls, settings=settings
        )
        retention = RetentionActivities(sessions=sessions, storage=storage, settings=settings)
        sync_runs = partial(
            Worker,
            client,
            task_queue=settings.sync_task_queue,
            workflows=[
                SyncRunWorkflow,
                PruneEventsWorkflow,
                RetentionWorkflow,
                AlertSweepWorkflow,
                AlertDeliveryWorkflow,
            ],
            activities=[
                sync.record,
                sync.updated_since,
                sync.open_run,
                MaintenanceActivities(
                    sessions=sessions, idempotency_ttl_hours=settings.idempotency_ttl_hours
                ).prune_events,
                retention.batch,
                alerts.evaluate,
                alerts.deliver,
            ],
            max_cached_workflows=settings.worker_max_cached_workflows,
            workflow_runner=runner,
            graceful_shutdown_timeout=graceful,
        )
        # An activity makes up to `sync_pages_per_activity` requests, so the queue's activities
        # per second are the request limit divided by that.
        interval = settings.sync_min_interval_seconds * settings.sync_pages_per_activity
        erp_pages = partial(
            Worker,
            client,
            task_queue=settings.erp_task_queue,
            activities=[sync.fetch_pages],
            max_concurrent_activities=max(1, settings.sync_concurrency) * 2,
            max_task_queue_activities_per_second=(1.0 / interval) if interval > 0 else None,
            # A canceled run reaches its page activities through heartbeat answers.
            max_heartbeat_throttle_interval=timedelta(seconds=1),
            graceful_shutdown_timeout=graceful,
        )
        pull = PullSyncActivities(
            sessions=sessions, fetcher=pull_fetcher, config=PullConfig.from_settings(settings)
        )
        pull_sync = partial(
            Worker,
            client,
            task_queue=settings.pull_sync_task_queue,
            workflows=[PullSyncCycleWorkflow, PullSyncCleanupWorkflow],
            activities=[pull.plan, pull.pull_batch, pull.finish_cycle, pull.cleanup],
            max_cached_workflows=settings.worker_max_cached_workflows,
            workflow_runner=runner,
            graceful_shutdown_timeout=graceful,
        )
        try:
            # Built only when chosen: a worker registers with the client as it is made.
            by_name = {
                "media": media, "storage": copies, "sync": sync_runs, "erp": erp_pages,
                "pull-sync": pull_sync,
            }  # fmt: skip
            made = [make() for name, make in by_name.items() if name in chosen]
            if "media" in chosen:
                made.insert(1, provider_pollers())
                made[2:2] = [provider_calls(name) for name in sorted(providers)]
            yield made
        finally:
            await engine.dispose()


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the housekeeping schedules unless they exist (every worker tries; one wins)."""
    schedules = {
        PRUNE_SCHEDULE_ID: every(
            ScheduleActionStartWorkflow(
                PruneEventsWorkflow.run,
                settings.events_retention_hours,
                id=f"{PRUNE_SCHEDULE_ID}-run",
                task_queue=settings.sync_task_queue,
            ),
            timedelta(hours=1),
        ),
        RECOVERY_SCHEDULE_ID: every(
            ScheduleActionStartWorkflow(
                RecoveryWorkflow.run,
                False,
                id=f"{RECOVERY_SCHEDULE_ID}-run",
                task_queue=settings.media_task_queue,
            ),
            timedelta(minutes=settings.recovery_interval_minutes),
        ),
        # Always there: with no retention period set, a run finds nothing due.
        RETENTION_SCHEDULE_ID: every(
            ScheduleActionStartWorkflow(
                RetentionWorkflow.run,
                RetentionInput(batch_size=settings.retention_batch),
                id=f"{RETENTION_SCHEDULE_ID}-run",
                task_queue=settings.sync_task_queue,
            ),
            timedelta(hours=settings.retention_interval_hours),
            "deletes outputs past OUTPUT_RETENTION_DAYS; jobs end `expired`",
        ),
    }
    if settings.alert_webhook_urls:  # no URL: nobody to tell, no sweep
        schedules[ALERT_SCHEDULE_ID] = every(
            ScheduleActionStartWorkflow(
                AlertSweepWorkflow.run,
                id=f"{ALERT_SCHEDULE_ID}-run",
                task_queue=settings.sync_task_queue,
            ),
            timedelta(minutes=settings.alert_interval_minutes),
            "finds incidents and sends each once to ALERT_WEBHOOK_URLS",
        )
    created = await create_missing(client, schedules)
    created += await pull_schedules.ensure(client, settings)
    for schedule_id in created:
        log.info("created schedule %s", schedule_id)


async def ensure_provider_pollers(client: Client, settings: Settings) -> None:
    """Start each provider's poller unless it runs (every media worker tries; one wins)."""
    if not settings.provider_pollers:
        return
    for name in registry.names():
        await client.start_workflow(
            PROVIDER_POLLER_WORKFLOW,
            ProviderPollerInput(provider=name, interval_seconds=settings.poll_interval_seconds),
            id=provider_poller_workflow_id(name),
            task_queue=settings.poller_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime serving the SDK's metrics at WORKER_METRICS_PORT (None: port 0, off).

    The Prometheus endpoint is served by the SDK core itself, at `http://host:port/metrics`.
    """
    if not settings.worker_metrics_port:
        return None
    address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    log.info("worker metrics at http://%s/metrics", address)
    return runtime


async def main() -> None:
    configure_logging(text_format=TEXT_FORMAT)  # LOG_FORMAT=json: one JSON object per line
    setup_tracing("autosync-worker")  # only with an OTLP endpoint set
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per provider call is noise
    settings = get_settings()
    settings.signing_secret()  # refuse to start without SECRET_KEY, with the reason
    client = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        runtime=metrics_runtime(settings),
        # Its workers inherit them: spans for workflows and (local) activities.
        interceptors=temporal_interceptors(),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await ensure_schedules(client, settings)
    if "media" in (settings.worker_queues or WORKER_QUEUE_NAMES):
        registry.configure(settings)
        await ensure_provider_pollers(client, settings)
    async with build_workers(settings, client) as workers, AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        tune_for_server()
        log.info(
            "worker polling task queue %s at %s",
            ", ".join(repr(w.task_queue) for w in workers),
            settings.temporal_address,
        )
        await stop.wait()
        log.info(
            "shutting down: finishing running activities (up to %ss)",
            settings.worker_graceful_shutdown_seconds,
        )
        # All at once: one after another, each worker's grace period would add up.
        await asyncio.gather(*(worker.shutdown() for worker in workers))
    flush_tracing()


if __name__ == "__main__":
    # asyncio's loop, not uvloop: measured with bench/recovery.py, uvloop held ~40 MB more at
    # the peak of ten output copies and more for larger files (README, "eighth run"), for ~7 %
    # less CPU in a pull cycle.
    asyncio.run(main())
