"""Record workflow histories for the replay tests.

    python -m tests.workflows.record_histories --out tests/workflows/histories/<release>

Record a set at each release, from that release's code, into a folder of its own; never
re-record or delete a folder: histories recorded by older code must keep replaying on newer
code, which is what guards determinism (tests/workflows/test_replay.py replays every file of
every folder). Files already in `--out` are kept, not overwritten.

The set: MediaJobWorkflow for each provider (webhook and poll paths), a failure, a cancel, an
adopt, an early webhook held until the submit returned, the submit recorded after a database
outage, the admission path (granted, cancelled while queued, past a deadline) and its
AdmissionWorkflow; SyncRunWorkflow (a run with a failed module and a 429, and one that continues as new);
RecoveryWorkflow; PruneEventsWorkflow. Activities are scripted fakes registered under the real
names, on a local dev server (it has our search attributes, so the upserts are recorded too).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.admission import AdmissionActivities
from core.contracts import (
    SEARCH_ATTRIBUTES,
    AdmissionLimits,
    JobStatus,
    PollPolicy,
    ProviderEvent,
    SyncMode,
    SyncRunInput,
    admission_workflow_id,
)
from core.recovery import RecoveryItem, RecoveryReport
from devstack.processes import temporal_cli_path
from tests.workflows import fakes
from tests.workflows.test_media_job import job, start, wait_for
from tests.workflows.test_sync_run import FakeUpstream
from workflows.admission import AdmissionWorkflow
from workflows.maintenance import PruneEventsWorkflow
from workflows.media_job import MediaJobWorkflow
from workflows.recovery import RecoveryWorkflow
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


async def record(out: Path) -> None:
    env = await WorkflowEnvironment.start_local(  # dev_server_existing_path: no download
        dev_server_existing_path=temporal_cli_path(), search_attributes=SEARCH_ATTRIBUTES
    )
    try:
        scenarios = {
            **await media_jobs(env.client),
            **await admission(env.client),
            **await sync_runs(env.client),
            **await housekeeping(env.client),
        }
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


if __name__ == "__main__":
    main()
