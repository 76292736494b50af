"""Record workflow histories for the replay tests.

    python -m tests.workflows.record_histories --out tests/workflows/histories/<release>

Record a set at each release, from that release's code, into a folder of its own; never
re-record or delete a folder: histories recorded by older code must keep replaying on newer
code, which is what guards determinism (tests/workflows/test_replay.py replays every file of
every folder). Files already in `--out` are kept, not overwritten.

The set: MediaJobWorkflow for each provider (webhook and poll paths), a failure, a cancel, an
adopt, an early webhook held until the submit returned, the submit recorded after a database
outage, and the bulk-poller path (its last-resort timer firing; a provider poller's signal);
SyncRunWorkflow (a run with a failed module and a 429, and one that continues as new);
RecoveryWorkflow; PruneEventsWorkflow; ProviderPollerWorkflow (a failed sweep, a signal, its
continue-as-new); PullSyncCycleWorkflow (two batches, a client failing) and
PullSyncCleanupWorkflow; AlertSweepWorkflow (deliveries started, then refused as already done)
and AlertDeliveryWorkflow (a target refusing); RetentionWorkflow (continued as new, then done);
JobBatchWorkflow (a batch walked in chunks, and one stopping at a chunk that keeps failing);
the admission path (granted, cancelled while queued, past a deadline) and AdmissionWorkflow.
Activities are scripted fakes registered under the real names, on a local dev server (it has
our search attributes, so the upserts are recorded too).

A scenario is an async function `(client) -> {history name: workflow handle}` listed in
SCENARIOS; to record a new workflow, write one and add it there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.admission import AdmissionActivities
from core.alerts.contracts import (
    ALERT_DELIVER,
    ALERT_EVALUATE,
    ALERT_SWEEP_WORKFLOW,
    ERR_ALERT_REFUSED,
    AlertDeliverInput,
    AlertSweepResult,
    AlertToSend,
    alert_delivery_workflow_id,
)
from core.batch_contracts import (
    ACT_BATCH_CHUNK,
    ACT_BATCH_FINISH,
    BatchChunk,
    BatchEnd,
    BatchProgress,
    JobBatchInput,
)
from core.contracts import (
    EVENT_FROM_POLLER,
    PROVIDER_POLL_SWEEP,
    SEARCH_ATTRIBUTES,
    AdmissionLimits,
    JobStatus,
    PollPolicy,
    PollSweepRequest,
    PollSweepResult,
    ProviderEvent,
    ProviderPollerInput,
    SyncMode,
    SyncRunInput,
    admission_workflow_id,
    media_job_workflow_id,
    provider_poller_workflow_id,
)
from core.pull_contracts import (
    ACT_BATCH,
    ACT_CLEANUP,
    ACT_FINISH,
    ACT_PLAN,
    BatchResult,
    ClientResult,
    CycleRecord,
    PullBatch,
    PullCycleInput,
    PullMode,
    PullPlan,
)
from core.recovery import RecoveryItem, RecoveryReport
from core.retention.contracts import RETENTION_WORKFLOW, RetentionInput
from devstack.processes import temporal_cli_path
from tests.workflows import fakes
from tests.workflows.test_media_job import job, start, wait_for
from tests.workflows.test_retention_workflow import FakeBatches
from tests.workflows.test_sync_run import FakeUpstream
from workflows.admission import AdmissionWorkflow
from workflows.alerts import AlertDeliveryWorkflow, AlertSweepWorkflow
from workflows.bulk_jobs import JobBatchWorkflow
from workflows.maintenance import PruneEventsWorkflow
from workflows.media_job import MediaJobWorkflow
from workflows.provider_poller import ProviderPollerWorkflow
from workflows.pull_sync import PullSyncCleanupWorkflow, PullSyncCycleWorkflow
from workflows.recovery import RecoveryWorkflow
from workflows.retention import RetentionWorkflow
from workflows.sync_run import SyncRunWorkflow

HISTORIES = Path(__file__).parent / "histories"
Handle = WorkflowHandle[Any, Any]


async def media_jobs(client: Client) -> dict[str, Handle]:
    fast: dict[str, Any] = {"search_attributes": True, "poll": PollPolicy(interval_seconds=0.3)}
    fake = fakes.FakeMedia()
    fake.on_poll = lambda n: fakes.PROCESSING if n < 2 else fakes.SUCCEEDED
    tq = f"rec-{uuid.uuid4()}"
    out: dict[str, Handle] = {}
    async with Worker(
        client, task_queue=tq, workflows=[MediaJobWorkflow], activities=fake.activities()
    ):
        for provider in ("replicate", "fal", "kie"):
            handle = await start(client, tq, replace(job(**fast), provider=provider))
            await wait_for(handle, JobStatus.SUBMITTED, JobStatus.PROCESSING)
            await handle.signal(
                MediaJobWorkflow.provider_event, ProviderEvent(snapshot=fakes.SUCCEEDED)
            )
            await handle.result()
            out[f"media_job_{provider}_webhook"] = handle

            fake.polls = 0
            handle = await start(client, tq, replace(job(**fast), provider=provider))
            await handle.result()
            out[f"media_job_{provider}_poll"] = handle

        fake.polls, fake.on_poll = 0, lambda n: fakes.FAILED
        handle = await start(client, tq, job(**fast))
        await handle.result()
        out["media_job_failed"] = handle
        fake.on_poll = lambda n: fakes.PROCESSING if n < 2 else fakes.SUCCEEDED

        handle = await start(client, tq, job(**fast))
        await wait_for(handle, JobStatus.SUBMITTED, JobStatus.PROCESSING)
        await handle.signal(MediaJobWorkflow.cancel, "recorded cancel")
        await handle.result()
        out["media_job_cancel"] = handle

        fake.polls = 0
        handle = await start(client, tq, job(adopt_provider_job_id=fakes.PROVIDER_JOB_ID, **fast))
        await handle.result()
        out["media_job_adopt"] = handle

        # A webhook that overtakes the submit (signal-with-start: it is handled before the
        # workflow's code runs), held, then applied once the submit named the provider job.
        fake.polls, fake.on_poll = 0, lambda n: fakes.FAILED  # only the held event succeeds
        inp = job(**fast)
        handle = await client.start_workflow(
            MediaJobWorkflow.run,
            inp,
            id=f"media-job-{inp.job_id}",
            task_queue=tq,
            start_signal="provider_event",
            start_signal_args=[ProviderEvent(snapshot=fakes.SUCCEEDED)],
        )
        assert (await handle.result()).status == JobStatus.SUCCEEDED
        out["media_job_held_early_event"] = handle
        fake.on_poll = lambda n: fakes.PROCESSING if n < 2 else fakes.SUCCEEDED

        # The workflow records the submit itself (after a scripted database outage).
        fake.polls, fake.record_errors = 0, 2
        handle = await start(client, tq, job(**fast))
        await handle.result()
        out["media_job_submit_recorded"] = handle
    return out


async def admission(client: Client) -> dict[str, Handle]:
    """The queue-control path: jobs admitted by their provider's AdmissionWorkflow (granted,
    queued then cancelled, past a deadline) with the submit on the provider's queue."""
    fast: dict[str, Any] = {"search_attributes": True, "poll": PollPolicy(interval_seconds=0.3)}
    fake = fakes.FakeMedia()
    fake.on_poll = lambda n: fakes.PROCESSING
    tq = f"rec-adm-{uuid.uuid4()}"
    calls_tq = f"rec-calls-{uuid.uuid4()}"
    provider = f"rec-{uuid.uuid4().hex[:8]}"
    gate = AdmissionActivities(client=client, task_queue=tq)
    acts = fake.activities()
    out: dict[str, Handle] = {}
    async with (
        Worker(
            client,
            task_queue=tq,
            workflows=[MediaJobWorkflow, AdmissionWorkflow],
            activities=[*acts, gate.request, gate.release, gate.ended],
        ),
        Worker(client, task_queue=calls_tq, activities=acts),
    ):
        base = replace(
            job(**fast),
            provider=provider,
            admission=AdmissionLimits(max_active=1, max_per_user=1),
            provider_task_queue=calls_tq,
            priority=0,
        )
        first = await start(client, tq, base)
        await wait_for(first, JobStatus.SUBMITTED, JobStatus.PROCESSING)
        queued = await start(client, tq, replace(base, job_id=uuid.uuid4().hex, priority=2))
        late = await start(client, tq, replace(base, job_id=uuid.uuid4().hex, deadline_seconds=3.0))
        await wait_for(queued, JobStatus.QUEUED)
        await queued.signal(MediaJobWorkflow.cancel, "recorded queued cancel")
        await queued.result()
        out["media_job_queued_cancel"] = queued
        await first.signal(MediaJobWorkflow.provider_event, ProviderEvent(snapshot=fakes.SUCCEEDED))
        await first.result()
        out["media_job_admitted"] = first
        await late.result()  # granted after the first, then past its deadline at the provider
        out["media_job_deadline"] = late
        line = client.get_workflow_handle(admission_workflow_id(provider))
        await line.terminate("recorded")
        out["admission"] = line
    return out


async def sync_runs(client: Client) -> dict[str, Handle]:
    upstream = FakeUpstream()
    tq = f"rec-sync-{uuid.uuid4()}"
    out: dict[str, Handle] = {}
    async with Worker(
        client, task_queue=tq, workflows=[SyncRunWorkflow], activities=upstream.activities()
    ):
        upstream.fail_module = "estoque"
        upstream.rate_limited = 1
        run = SyncRunInput(
            run_id=uuid.uuid4().hex, company_id="acme", mode=SyncMode.PERIOD,
            modules=["vendas", "estoque"], start_date="2024-12-01",
            end_date="2024-12-31", task_queue=tq, search_attributes=True,
        )  # fmt: skip
        handle = await client.start_workflow(
            SyncRunWorkflow.run, run, id=f"sync-run-{run.run_id}", task_queue=tq
        )
        await handle.result()
        out["sync_run"] = handle

        upstream.fail_module, upstream.pages = None, 6
        run = replace(run, run_id=uuid.uuid4().hex, pages_per_activity=2,
                      continue_after_events=20)  # fmt: skip
        handle = await client.start_workflow(
            SyncRunWorkflow.run, run, id=f"sync-run-{run.run_id}", task_queue=tq
        )
        await handle.result()
        # The first execution: it ends by continuing as new.
        out["sync_run_continued"] = client.get_workflow_handle(
            handle.id, run_id=handle.first_execution_run_id
        )
    return out


async def housekeeping(client: Client) -> dict[str, Handle]:
    @activity.defn(name="recovery.sweep")
    async def sweep(dry_run: bool) -> RecoveryReport:
        item = RecoveryItem(
            job_id="j1", user_id="u1", kind="generation", provider="replicate",
            provider_job_id="pred-1", status="processing", problem="unfinished", action="nudge",
        )  # fmt: skip
        return RecoveryReport(dry_run=dry_run, checked=3, items=[item])

    @activity.defn(name="events.prune")
    async def prune(retention_hours: float) -> int:
        return 7

    tq = f"rec-house-{uuid.uuid4()}"
    out: dict[str, Handle] = {}
    async with Worker(
        client,
        task_queue=tq,
        workflows=[RecoveryWorkflow, PruneEventsWorkflow],
        activities=[sweep, prune],
    ):
        recovery = await client.start_workflow(
            RecoveryWorkflow.run, False, id=f"recovery-{uuid.uuid4()}", task_queue=tq
        )
        await recovery.result()
        out["recovery"] = recovery
        pruned = await client.start_workflow(
            PruneEventsWorkflow.run, 72.0, id=f"prune-{uuid.uuid4()}", task_queue=tq
        )
        await pruned.result()
        out["prune_events"] = pruned
    return out


async def bulk_polling(client: Client) -> dict[str, Handle]:
    """MediaJobWorkflow with a provider poller (PollPolicy.bulk_poller: `stretch-poll-timers`),
    and the poller: a sweep that fails, one that signals the job, then continue-as-new."""
    fake = fakes.FakeMedia(on_poll=lambda n: fakes.PROCESSING if n < 2 else fakes.SUCCEEDED)
    sweeps: list[PollSweepRequest] = []
    signal_job: list[str] = []  # the job the third sweep finds succeeded

    @activity.defn(name=PROVIDER_POLL_SWEEP)
    async def sweep(request: PollSweepRequest) -> PollSweepResult:
        sweeps.append(request)
        if len(sweeps) == 2:
            raise ApplicationError("provider list failed (scripted)", non_retryable=True)
        if len(sweeps) == 3 and signal_job:
            await client.get_workflow_handle(media_job_workflow_id(signal_job[0])).signal(
                MediaJobWorkflow.provider_event,
                ProviderEvent(snapshot=fakes.SUCCEEDED, source=EVENT_FROM_POLLER),
            )
            return PollSweepResult(in_flight=1, asked=1, provider_calls=1, signalled=1)
        return PollSweepResult(in_flight=1, asked=1, provider_calls=1, webhooks_arriving=True)

    tq = f"rec-poller-{uuid.uuid4()}"
    out: dict[str, Handle] = {}
    async with Worker(
        client,
        task_queue=tq,
        workflows=[MediaJobWorkflow, ProviderPollerWorkflow],
        activities=[*fake.activities(), sweep],
    ):
        # No poller running: the job's own (stretched) timer fires twice, a poll each time.
        last_resort = PollPolicy(interval_seconds=0.3, max_seconds=0.6, bulk_poller=True)
        handle = await start(client, tq, job(search_attributes=True, poll=last_resort))
        assert (await handle.result()).status == JobStatus.SUCCEEDED
        out["media_job_bulk_poller_timer"] = handle

        # The poller's third sweep sees the job succeed and signals it; its timer never fires.
        covered = PollPolicy(interval_seconds=0.3, max_seconds=120, bulk_poller=True)
        inp = job(search_attributes=True, poll=covered)
        signal_job.append(inp.job_id)
        handle = await start(client, tq, inp)
        await wait_for(handle, JobStatus.SUBMITTED, JobStatus.PROCESSING)
        poller = await client.start_workflow(
            ProviderPollerWorkflow.run,
            ProviderPollerInput(provider="replicate", interval_seconds=0.3, sweeps_per_run=3),
            id=provider_poller_workflow_id(f"replicate-rec-{uuid.uuid4().hex}"),
            task_queue=tq,
        )
        assert (await handle.result()).status == JobStatus.SUCCEEDED
        out["media_job_bulk_poller_signal"] = handle
        for _ in range(400):  # until the next run swept: the first ended continuing as new
            if len(sweeps) > 3:
                break
            await asyncio.sleep(0.05)
        assert len(sweeps) > 3, "the poller never continued as new"
        await client.get_workflow_handle(poller.id).terminate("recorded")
        out["provider_poller_continued"] = client.get_workflow_handle(
            poller.id, run_id=poller.first_execution_run_id
        )
    return out


async def pull_sync(client: Client) -> dict[str, Handle]:
    """A cycle of two batches run at once, one client failing; the cleanup."""

    @activity.defn(name=ACT_PLAN)
    async def plan(mode: str) -> PullPlan:
        return PullPlan(batches=[["c1", "c2"], ["c3"]], parallel_batches=2)

    @activity.defn(name=ACT_BATCH)
    async def batch(request: PullBatch) -> BatchResult:
        results = [
            ClientResult(client_id=c, ok=True, fetched=3, stored=3, acknowledged=3)
            if c != "c2"
            else ClientResult(client_id=c, error="HTTP 503 from the client (scripted)")
            for c in request.client_ids
        ]
        return BatchResult(results=results)

    @activity.defn(name=ACT_FINISH)
    async def finish(cycle: CycleRecord) -> float:
        return 0.5

    @activity.defn(name=ACT_CLEANUP)
    async def cleanup() -> dict[str, int]:
        return {"clients": 1, "attempts": 12, "cycles": 2}

    tq = f"rec-pull-{uuid.uuid4()}"
    out: dict[str, Handle] = {}
    async with Worker(
        client,
        task_queue=tq,
        workflows=[PullSyncCycleWorkflow, PullSyncCleanupWorkflow],
        activities=[plan, batch, finish, cleanup],
    ):
        cycle = await client.start_workflow(
            PullSyncCycleWorkflow.run,
            PullCycleInput(mode=PullMode.ALL.value, trigger="recorded"),
            id=f"pull-cycle-{uuid.uuid4()}",
            task_queue=tq,
        )
        assert (await cycle.result()).failed == 1
        out["pull_sync_cycle"] = cycle
        cleaned = await client.start_workflow(
            PullSyncCleanupWorkflow.run, id=f"pull-cleanup-{uuid.uuid4()}", task_queue=tq
        )
        await cleaned.result()
        out["pull_sync_cleanup"] = cleaned
    return out


async def alerts(client: Client) -> dict[str, Handle]:
    """A sweep starts an incident's delivery (one target refuses); a later sweep that still
    owes the incident finds the delivery workflow done and starts none."""
    key = f"failure_rate:fal:rec-{uuid.uuid4().hex[:8]}"
    owed = AlertToSend(
        incident_key=key, summary="fal: 6 of 10 jobs failed", targets=["ops", "pager"]
    )

    @activity.defn(name=ALERT_EVALUATE)
    async def evaluate() -> AlertSweepResult:
        return AlertSweepResult(opened=[key], to_send=[owed])

    @activity.defn(name=ALERT_DELIVER)
    async def deliver(request: AlertDeliverInput) -> str:
        if request.target == "pager":
            raise ApplicationError("HTTP 403 from the receiver (scripted)", type=ERR_ALERT_REFUSED)
        return "sent"

    tq = f"rec-alerts-{uuid.uuid4()}"
    out: dict[str, Handle] = {}
    async with Worker(
        client,
        task_queue=tq,
        workflows=[AlertSweepWorkflow, AlertDeliveryWorkflow],
        activities=[evaluate, deliver],
    ):
        for name in ("alert_sweep", "alert_sweep_already_delivered"):
            sweep = await client.start_workflow(
                ALERT_SWEEP_WORKFLOW, id=f"alert-sweep-{uuid.uuid4()}", task_queue=tq
            )
            await sweep.result()
            out[name] = sweep
            delivery = client.get_workflow_handle(alert_delivery_workflow_id(key))
            await delivery.result()
        out["alert_delivery"] = delivery
    return out


async def retention(client: Client) -> dict[str, Handle]:
    """Seven due jobs, two per batch, two batches a run: one continue-as-new, then done."""
    batches = FakeBatches()
    tq = f"rec-retention-{uuid.uuid4()}"
    out: dict[str, Handle] = {}
    async with Worker(
        client, task_queue=tq, workflows=[RetentionWorkflow], activities=[batches.batch]
    ):
        handle = await client.start_workflow(
            RETENTION_WORKFLOW,
            RetentionInput(batch_size=2, max_batches=2),
            id=f"retention-{uuid.uuid4()}",
            task_queue=tq,
        )
        assert await handle.result() == 7
        out["retention_continued"] = client.get_workflow_handle(
            handle.id, run_id=handle.first_execution_run_id
        )
        out["retention"] = client.get_workflow_handle(handle.id)  # the last run
    return out


Scenario = Callable[[Client], Awaitable[dict[str, Handle]]]
# Each records its histories into the release folder; a new workflow gets a scenario here.


async def job_batches(client: Client) -> dict[str, Handle]:
    done: dict[str, int] = {}

    @activity.defn(name=ACT_BATCH_CHUNK)
    async def run_chunk(chunk: BatchChunk) -> BatchProgress:
        if chunk.batch_id.startswith("stuck") and chunk.start > 0:
            raise ApplicationError("the orchestrator is unavailable", non_retryable=True)
        done[chunk.batch_id] = done.get(chunk.batch_id, 0) + chunk.size
        return BatchProgress(total=5, done=done[chunk.batch_id] - 1, failed=0, skipped=1)

    @activity.defn(name=ACT_BATCH_FINISH)
    async def finish(end: BatchEnd) -> BatchProgress:
        n = done.get(end.batch_id, 0)
        return BatchProgress(total=5, done=n - 1, failed=0, skipped=1)

    tq = f"rec-batch-{uuid.uuid4()}"
    out: dict[str, Handle] = {}
    async with Worker(
        client, task_queue=tq, workflows=[JobBatchWorkflow], activities=[run_chunk, finish]
    ):
        for name, batch_id in (
            ("job_batch", uuid.uuid4().hex),
            ("job_batch_stopped", f"stuck{uuid.uuid4().hex}"),
        ):
            handle = await client.start_workflow(
                JobBatchWorkflow.run,
                JobBatchInput(batch_id=batch_id, action="cancel", total=5, chunk_size=2),
                id=f"job-batch-{batch_id}",
                task_queue=tq,
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
            try:
                await handle.result()
            except WorkflowFailureError:
                pass
            out[name] = handle
    return out


SCENARIOS: list[Scenario] = [
    media_jobs,
    sync_runs,
    housekeeping,
    bulk_polling,
    pull_sync,
    alerts,
    retention,
    job_batches,
    admission,
]


async def record(out: Path) -> None:
    env = await WorkflowEnvironment.start_local(  # dev_server_existing_path: no download
        dev_server_existing_path=temporal_cli_path(), search_attributes=SEARCH_ATTRIBUTES
    )
    try:
        scenarios: dict[str, Handle] = {}
        for scenario in SCENARIOS:
            recorded = await scenario(env.client)
            assert not scenarios.keys() & recorded.keys(), "two scenarios name one history"
            scenarios.update(recorded)
        histories = {name: await h.fetch_history() for name, h in scenarios.items()}
        write(out, {name: history.to_json() for name, history in histories.items()})
    finally:
        await env.shutdown()


def write(out: Path, histories: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in histories.items():
        path = out / f"{name}.json"
        if path.exists():
            print("kept", path)  # recorded by older code: what replay guards
            continue
        path.write_text(text)
        print("recorded", path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help=f"a new folder for this release's histories, e.g. {HISTORIES}/<release>",
    )
    asyncio.run(record(parser.parse_args().out))
    # Every history is written. Skipping the interpreter's finalization: the SDK's Rust threads
    # outlive it and were seen aborting it (PyGILState_Release while finalizing, exit 134).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
