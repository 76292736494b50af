"""Scale-out: media jobs and sync runs at 1, 2 and 4 worker processes; prints one JSON object.

    .venv/bin/python bench/scale_out.py [--quick] [--jobs 150] [--workers 1,2,4] [--keep]

Self-contained, on loopback in a temp dir and on free ports: one Temporal dev server, a
private PostgreSQL (`devstack.postgres`), moto's S3 (`devstack.s3`), the Replicate, fal, KIE
and ERP emulators, two API processes on the same database (clients take them in turn, and
retry a failed create on the other one with the same `Idempotency-Key`) and N worker
processes, each polling every task queue (WORKER_QUEUES unset). Progress on stderr, JSON on
stdout.

- Steps: for each worker count (workers are added, never restarted, between steps) `--jobs`
  generations spread over the three providers are POSTed (at most `--concurrency` at once)
  while each ERP company (acme, globex) runs full-range `period` syncs back to back; the step
  ends when every job and run is terminal. `jobs_per_s`: succeeded jobs over first POST to
  last `completed_at`; `rows_per_s`: rows of the step's runs (processed + skipped) over the
  first run's start to the last run's end. `cpu_pct`: CPU of each process tree over the step's
  wall time (100 = one core); `machine_busy_pct`: the whole machine (100 = every core).
- `share`: per worker identity (`pid@host`, named after its process), the workflow tasks
  completed and activity tasks started in a sample of the step's job histories and in every
  run's history (local activities run inside workflow tasks).
- `saturation`: the gain of jobs/s and rows/s from one step to the next, the dev server's CPU
  per step, and the first worker count where throughput stops rising (< 10 % gain). This
  machine has 2 cores: past two busy processes more workers can't add CPU, so the figures show
  where the machine, not the design, stops scaling.
- Kill: after the last step, one more batch at the largest worker count; once a third of its
  jobs are accepted, one worker and one API process are SIGKILLed. The API is restarted at
  once (as a supervisor would); the worker is not: the survivors take its work over (a copy
  it was running is retried after the copy's 90 s heartbeat timeout). Then the bench waits for
  every job and run to end and checks `exactly_once` (every figure must be 0, else exit 1):
  jobs not terminal or not succeeded, job rows per create (by a ref in each input), provider
  jobs per job at the emulators (`GET /_emulator/jobs`, bench/soak.py's ledger), runs per
  create and not DONE, and the sync tables against the ERP emulator's counts, no duplicates.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import tempfile
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import psutil
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.orm import Session
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from bench.common import UNTHROTTLED_ENV, bounded, log, rounded
from bench.front import TcpFront
from bench.procs import CpuMeter, busy_seconds, machine
from bench.soak import (
    COMPANIES,
    JOB_TERMINAL,
    REF,
    RUN_TERMINAL,
    ErpRange,
    db_jobs,
    db_runs,
    erp_range,
    erp_upstream,
    job_input_for,
    not_terminal,
    provider_jobs,
    sync_tables,
    was_cancelled,
)
from core.contracts import media_job_workflow_id, sync_run_workflow_id
from core.db import sync_url
from core.migrate import upgrade
from core.models import Job
from devstack.postgres import PostgresServer
from devstack.processes import ManagedProcess, free_port
from devstack.s3 import S3Server
from devstack.stack import ROOT, WORKER_READY, Stack, StackConfig

BUCKET = "autosync-scale"
USER_KEY = "scale-user-key"
ADMIN_KEY = "scale-admin-key"
PROVIDERS = ("replicate", "fal", "kie")
# Below this gain from one worker count to the next, throughput counts as no longer rising.
FLAT_GAIN = 1.10

ENV = {
    **UNTHROTTLED_ENV,
    "POLL_INTERVAL_SECONDS": "5",
    "REPLICATE_WEBHOOK_EVENTS": "completed",
    "REPLICATE_EMULATOR_STARTING_SECONDS": "0.2",
    "REPLICATE_EMULATOR_PROCESSING_SECONDS": "0.3",
    "FAL_EMULATOR_QUEUE_SECONDS": "0.2",
    "FAL_EMULATOR_RUN_SECONDS": "0.3",
    "KIE_EMULATOR_WAITING_SECONDS": "0.1",
    "KIE_EMULATOR_QUEUING_SECONDS": "0.1",
    "KIE_EMULATOR_GENERATING_SECONDS": "0.3",
    "SYNC_CONCURRENCY": "2",
    "SYNC_PAGES_PER_ACTIVITY": "5",
    # A SIGTERMed worker (the end of the bench) need not drain long.
    "WORKER_GRACEFUL_SHUTDOWN_SECONDS": "5",
}


@dataclass(frozen=True)
class Plan:
    workers: tuple[int, ...] = (1, 2, 4)
    jobs: int = 150
    concurrency: int = 40
    rows_per_view: int = 4000
    page_size: int = 500
    kill_jobs: int = 150
    # Outlasts the copy's 90 s heartbeat timeout: a copy on the killed worker is retried then.
    quiescence_s: float = 180.0
    history_sample: int = 40
    quick: bool = False

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(workers=(1, 2), jobs=30, concurrency=15, rows_per_view=500, page_size=250,
                   kill_jobs=30, quiescence_s=150.0, history_sample=15, quick=True)  # fmt: skip


# --- pure figures (tests/bench/test_scale_out.py) ----------------------------------------------


def worker_name(identity: str, names: Mapping[str, str]) -> str:
    """The worker process behind a Temporal identity (`pid@host`, the SDK's default)."""
    pid = identity.split("@", 1)[0]
    return names.get(pid, identity or "?")


def tally_identities(
    histories: Iterable[Sequence[HistoryEvent]], names: Mapping[str, str]
) -> dict[str, Counter[str]]:
    """Workflow tasks completed and activity tasks started, per worker, over some histories."""
    workflow_tasks: Counter[str] = Counter()
    activity_tasks: Counter[str] = Counter()
    for events in histories:
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                identity = event.workflow_task_completed_event_attributes.identity
                workflow_tasks[worker_name(identity, names)] += 1
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                identity = event.activity_task_started_event_attributes.identity
                activity_tasks[worker_name(identity, names)] += 1
    return {"workflow_tasks": workflow_tasks, "activity_tasks": activity_tasks}


def shares(counts: Mapping[str, int]) -> dict[str, float]:
    """Each worker's fraction of the counted tasks (0..1, rounded), busiest first."""
    total = sum(counts.values())
    if not total:
        return {}
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {name: round(n / total, 3) for name, n in ordered}


def saturation(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Gains from one worker count to the next, and where throughput stops rising."""
    gains: list[dict[str, Any]] = []
    flat_at: dict[str, int | None] = {"jobs_per_s": None, "rows_per_s": None}
    for before, after in itertools.pairwise(steps):
        gain: dict[str, Any] = {"from_workers": before["workers"], "to_workers": after["workers"]}
        for figure in flat_at:
            old, new = before.get(figure), after.get(figure)
            ratio = round(new / old, 2) if old and new is not None else None
            gain[figure] = ratio
            if flat_at[figure] is None and ratio is not None and ratio < FLAT_GAIN:
                flat_at[figure] = after["workers"]
        gains.append(gain)
    temporal = {str(s["workers"]): s.get("cpu_pct", {}).get("temporal") for s in steps}
    busy = {str(s["workers"]): s.get("machine_busy_pct") for s in steps}
    return {
        "gains": gains,
        "stops_rising_at_workers": flat_at,
        "temporal_cpu_pct": temporal,
        "machine_busy_pct": busy,
    }


def provider_job_check(
    jobs: Iterable[tuple[str, str, str | None]],
    listed: Mapping[str, Mapping[str, Sequence[dict[str, Any]]]],
) -> dict[str, Any]:
    """Per job (id, provider, our provider job id): exactly one live provider job, ours.

    `listed`: per provider, our job id -> the provider jobs carrying it (the emulators'
    `GET /_emulator/jobs`). Cancelled extras are counted apart; they did no work for anyone.
    """
    known: set[str] = set()
    checked = 0
    not_one: list[str] = []
    extra_cancelled = 0
    for job_id, provider, ours in jobs:
        known.add(job_id)
        if provider not in listed:
            continue
        items = list(listed[provider].get(job_id, []))
        checked += 1
        live = [item for item in items if not was_cancelled(item)]
        extra_cancelled += len(items) - len(live)
        if len(live) == 1 and (ours is None or live[0]["id"] == ours):
            continue
        not_one.append(f"{job_id} {provider}: ours {ours}, provider {[i['id'] for i in items]}")
    unknown = 0
    for by_job in listed.values():
        for job_id, listed_items in by_job.items():
            if job_id not in known:
                unknown += sum(1 for item in listed_items if not was_cancelled(item))
    return {"checked": checked, "not_exactly_one": not_one, "extra_cancelled": extra_cancelled,
            "for_jobs_we_do_not_have": unknown}  # fmt: skip


# --- the stack ---------------------------------------------------------------------------------


class ScaleOut:
    """PostgreSQL, S3, the stack's server and emulators, two APIs and N workers."""

    def __init__(self, tmp: Path, plan: Plan) -> None:
        self.tmp = tmp
        self.plan = plan
        self.pg = PostgresServer(log_dir=tmp / "logs" / "pg")
        self.s3 = S3Server(log_dir=tmp / "logs" / "s3")
        self.stack: Stack | None = None
        self.apis: list[ManagedProcess] = []
        self.api_ports: list[int] = []
        self.workers: list[ManagedProcess] = []  # alive or killed, in start order
        self.killed: list[str] = []
        self.front: TcpFront | None = None
        self.engine: Engine | None = None

    @property
    def stack_(self) -> Stack:
        assert self.stack is not None
        return self.stack

    @property
    def engine_(self) -> Engine:
        assert self.engine is not None
        return self.engine

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    @property
    def live_workers(self) -> list[ManagedProcess]:
        return [w for w in self.workers if w.alive()]

    def names(self) -> dict[str, str]:
        """Worker pid -> name, for the identities in histories."""
        return {str(w.pid): w.name for w in self.workers}

    def start(self) -> None:
        self.pg.start()
        database_url = self.pg.create_database()
        self.s3.start()
        self.s3.create_bucket(BUCKET)
        env = {**ENV, "ERP_EMULATOR_ROWS_PER_VIEW": str(self.plan.rows_per_view),
               "SYNC_PAGE_SIZE": str(self.plan.page_size)}  # fmt: skip
        config = StackConfig.ephemeral(
            self.tmp / "stack",
            database_url=database_url,
            storage_backend="s3",
            s3_endpoint_url=self.s3.endpoint_url,
            s3_bucket=BUCKET,
            api_keys=f"{USER_KEY}=scale,{ADMIN_KEY}=root:admin",
            env=env,
            log_dir=self.tmp / "logs" / "stack",
            worker_metrics_port=None,  # many workers: no shared metrics port
        )
        self.stack = Stack(config)
        self.stack.data_dir.mkdir(parents=True, exist_ok=True)
        self.stack.start_temporal()
        upgrade(database_url)
        self.stack.start_emulators()
        self.api_ports = [free_port(), free_port()]
        self.apis = [self._start_api(i) for i in range(2)]
        # PUBLIC_BASE_URL (the webhooks' address) is the stack's API port: a front there sends
        # each connection to a live API, as a deployment's load balancer does.
        self.front = TcpFront(self.stack.config.api_port, self.api_ports).start()
        self.engine = create_engine(sync_url(database_url), pool_size=4)

    def _start_api(self, index: int) -> ManagedProcess:
        port = self.api_ports[index]
        args = [
            sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        proc = ManagedProcess(
            f"api-{index + 1}", args, log_dir=self.stack_.log_dir,
            env=self.stack_.app_env(), cwd=ROOT,
        )  # fmt: skip
        proc.start().wait_http(f"http://127.0.0.1:{port}/v1/health")
        return proc

    def add_worker(self) -> ManagedProcess:
        proc = ManagedProcess(
            f"worker-{len(self.workers) + 1}",
            [sys.executable, str(ROOT / "worker.py")],
            log_dir=self.stack_.log_dir,
            env=self.stack_.app_env(),
            cwd=ROOT,
        ).start()
        self.workers.append(proc)
        proc.wait_log(WORKER_READY, timeout=120)
        return proc

    def kill_one_worker_and_api(self) -> None:
        """SIGKILL the oldest worker (the most cached workflows) and the second API; restart
        the API on its port."""
        worker = self.live_workers[0]
        worker.kill()
        self.killed.append(worker.name)
        self.apis[1].kill()
        self.killed.append(self.apis[1].name)
        self.apis[1] = self._start_api(1)

    def pids(self) -> dict[str, int]:
        assert self.stack_.temporal is not None
        pids = {"temporal": self.stack_.temporal.pid, "postgres": self.pg.pid or 0}
        pids.update({api.name: api.pid for api in self.apis})
        pids.update({w.name: w.pid for w in self.live_workers})
        return pids

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if self.front is not None:
            self.front.stop()
        for proc in [*self.workers, *self.apis]:
            proc.stop(timeout=15)
        if self.stack is not None:
            self.stack.stop()
        self.s3.stop()
        self.pg.stop()


# --- the load ----------------------------------------------------------------------------------


@dataclass
class Creates:
    accepted: int = 0
    retries: int = 0
    abandoned: int = 0
    answers: Counter[str] = field(default_factory=Counter)


class RoundRobin:
    """Requests taking the API processes in turn; a failed create is retried on the next one
    with the same Idempotency-Key, as a client behind a load balancer would."""

    def __init__(self, urls: Callable[[], list[str]], give_up_s: float = 120.0) -> None:
        self._urls = urls
        self._turn = itertools.count()
        self.give_up_s = give_up_s
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0), limits=httpx.Limits(max_connections=100)
        )
        self.jobs = Creates()
        self.runs = Creates()

    def url(self, path: str) -> str:
        urls = self._urls()
        return urls[next(self._turn) % len(urls)] + path

    async def create(self, key: str, path: str, body: dict[str, Any], tally: Creates) -> Any:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
        deadline = time.monotonic() + self.give_up_s
        while True:
            try:
                response = await self.http.post(self.url(path), json=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if response.status_code in (200, 201, 202):
                    tally.accepted += 1
                    return response.json()
                problem = f"HTTP {response.status_code}"
                # 409: the company's run is still going; other 4xx would be the bench's bug.
                if response.status_code < 500 and response.status_code not in (409, 429):
                    tally.answers[f"refused {problem}: {response.text[:200]}"] += 1
                    return None
            tally.answers[problem] += 1
            if time.monotonic() >= deadline:
                tally.abandoned += 1
                return None
            tally.retries += 1
            await asyncio.sleep(0.5)

    async def get(self, key: str, path: str) -> dict[str, Any] | None:
        try:
            response = await self.http.get(
                self.url(path), headers={"Authorization": f"Bearer {key}"}
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class Load:
    """What one step (or the kill batch) pushed."""

    refs: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


class Pusher:
    def __init__(self, client: RoundRobin, erp: ErpRange) -> None:
        self.client = client
        self.erp = erp
        self.seq = 0
        self.refs: list[str] = []  # every job create, in order
        self.run_ids: list[str] = []  # every accepted run create
        self.job_ids: list[str] = []  # every accepted job create

    async def job(self, load: Load) -> None:
        self.seq += 1
        ref = f"soak-{self.seq:06d}"  # bench.soak.REF finds it in the stored input
        provider = PROVIDERS[self.seq % len(PROVIDERS)]
        body = {"kind": "generation", "provider": provider,
                "input": job_input_for(provider, "generation", "scale", ref)}  # fmt: skip
        self.refs.append(ref)
        load.refs.append(ref)
        created = await self.client.create(USER_KEY, "/v1/jobs", body, self.client.jobs)
        if created is not None:
            load.job_ids.append(str(created["id"]))
            self.job_ids.append(str(created["id"]))

    async def syncs(self, company: str, load: Load, stop: asyncio.Event) -> None:
        """Full-range period runs back to back until `stop` (at least one)."""
        while True:
            body = {"company_id": company, "mode": "period", "start_date": self.erp.start,
                    "end_date": self.erp.end}  # fmt: skip
            run = await self.client.create(ADMIN_KEY, "/v1/sync-runs", body, self.client.runs)
            if run is not None:
                self.run_ids.append(str(run["id"]))
                load.run_ids.append(str(run["id"]))
                while True:
                    now = await self.client.get(ADMIN_KEY, f"/v1/sync-runs/{run['id']}")
                    if now is not None and now["status"] in RUN_TERMINAL:
                        break
                    await asyncio.sleep(0.5)
            if stop.is_set():
                return


def _unix(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def job_rows(engine: Engine, ids: Sequence[str]) -> list[tuple[str, str, float | None]]:
    with Session(engine) as session:
        return [
            (str(i), str(s), _unix(c))
            for i, s, c in session.execute(
                select(Job.id, Job.status, Job.completed_at).where(Job.id.in_(list(ids)))
            )
        ]


async def wait_jobs(engine: Engine, ids: Sequence[str], within: float) -> bool:
    deadline = time.monotonic() + within
    while True:
        rows = await asyncio.to_thread(job_rows, engine, ids)
        open_ = sum(1 for _, status, _ in rows if status not in JOB_TERMINAL)
        if open_ == 0 and len(rows) == len(ids):
            return True
        if time.monotonic() >= deadline:
            log(f"{open_} jobs still not terminal")
            return False
        await asyncio.sleep(0.5)


class CpuSampler:
    """The dev server's CPU % each second (100 = one core): its peak shows saturation."""

    def __init__(self, pid: int) -> None:
        self.samples: list[float] = []
        self._proc = psutil.Process(pid)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        self._proc.cpu_percent(None)
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(psutil.Error):
                self.samples.append(self._proc.cpu_percent(None))

    def __enter__(self) -> CpuSampler:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def push(
    h: ScaleOut,
    pusher: Pusher,
    jobs: int,
    concurrency: int,
    on_accepted: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[Load, float, float, bool]:
    """`jobs` jobs while both companies sync; (load, first POST, end, all terminal)."""
    load = Load()
    stop = asyncio.Event()
    syncing = asyncio.gather(*(pusher.syncs(c, load, stop) for c in COMPANIES))
    first = time.time()

    async def one(_: int) -> None:
        await pusher.job(load)
        if on_accepted is not None:
            await on_accepted(len(load.job_ids))

    await bounded(jobs, concurrency, one)
    done = await wait_jobs(h.engine_, load.job_ids, within=h.plan.quiescence_s + jobs)
    stop.set()
    await syncing
    return load, first, time.time(), done


async def histories(client: Client, workflow_ids: Sequence[str]) -> list[list[HistoryEvent]]:
    out: list[list[HistoryEvent]] = []
    for workflow_id in workflow_ids:
        with contextlib.suppress(Exception):
            history = await client.get_workflow_handle(workflow_id).fetch_history()
            out.append(list(history.events))
    return out


async def step_share(h: ScaleOut, temporal: Client, load: Load, sample: int) -> dict[str, Any]:
    """Each worker's share of the tasks in a sample of the jobs' histories and every run's."""
    sampled = load.job_ids[:: max(1, len(load.job_ids) // max(sample, 1))]
    ids = [media_job_workflow_id(j) for j in sampled]
    ids += [sync_run_workflow_id(r) for r in load.run_ids]
    counts = tally_identities(await histories(temporal, ids), h.names())
    out: dict[str, Any] = {kind: shares(c) for kind, c in counts.items()}
    out["histories"] = {"jobs": len(sampled), "runs": len(load.run_ids)}
    return out


def rows_of(engine: Engine, run_ids: Sequence[str]) -> tuple[int, float | None]:
    """Rows the runs went through (processed + skipped) and the seconds from the first run's
    start to the last one's end."""
    runs, modules = db_runs(engine)
    ours = [r for r in runs if r.id in set(run_ids)]
    rows = sum(m.processed + m.skipped for r in ours for m in modules.get(r.id, []))
    starts = [t for r in ours if (t := _unix(r.started_at or r.created_at)) is not None]
    ends = [t for r in ours if (t := _unix(r.finished_at)) is not None]
    wall = (max(ends) - min(starts)) if starts and ends else None
    return rows, wall


async def run_step(h: ScaleOut, pusher: Pusher, temporal: Client, workers: int) -> dict[str, Any]:
    while len(h.live_workers) < workers:
        log(f"starting worker {len(h.workers) + 1}")
        await asyncio.to_thread(h.add_worker)
    log(f"step: {workers} worker(s), {h.plan.jobs} jobs and back-to-back sync runs")
    meter = CpuMeter(h.pids())
    busy0, t0 = busy_seconds(), time.monotonic()
    assert h.stack_.temporal is not None
    with CpuSampler(h.stack_.temporal.pid) as sampler:
        load, first, _, done = await push(h, pusher, h.plan.jobs, h.plan.concurrency)
    wall = time.monotonic() - t0
    cpu = meter.stop()
    rows = await asyncio.to_thread(job_rows, h.engine_, load.job_ids)
    succeeded = [c for _, s, c in rows if s == "succeeded" and c is not None]
    jobs_wall = (max(succeeded) - first) if succeeded else None
    synced, sync_wall = await asyncio.to_thread(rows_of, h.engine_, load.run_ids)
    busy = busy_seconds() - busy0
    out: dict[str, Any] = {
        "workers": workers,
        "jobs": len(load.job_ids),
        "jobs_succeeded": len(succeeded),
        "all_terminal": done,
        "jobs_per_s": rounded(len(succeeded) / jobs_wall, 2) if jobs_wall else None,
        "sync_runs": len(load.run_ids),
        "rows": synced,
        "rows_per_s": rounded(synced / sync_wall, 0) if sync_wall else None,
        "wall_s": round(wall, 1),
        "cpu_pct": {name: round(100 * s / wall, 1) for name, s in cpu.items()},
        "machine_busy_pct": round(100 * busy / (wall * (psutil.cpu_count() or 1)), 1),
        "temporal_cpu_pct_peak_1s": max(sampler.samples, default=None),
    }
    out["share"] = await step_share(h, temporal, load, h.plan.history_sample)
    log(f"step {workers}: {out['jobs_per_s']} jobs/s, {out['rows_per_s']} rows/s, "
        f"server {out['cpu_pct'].get('temporal')} % CPU")  # fmt: skip
    return out


async def run_kill(h: ScaleOut, pusher: Pusher, temporal: Client) -> dict[str, Any]:
    workers = len(h.live_workers)
    trigger = max(1, h.plan.kill_jobs // 3)
    killed_at: list[float] = []

    async def on_accepted(accepted: int) -> None:
        if accepted >= trigger and not killed_at:
            killed_at.append(time.monotonic())
            log(f"{accepted} jobs accepted: SIGKILL one worker and one API")
            await asyncio.to_thread(h.kill_one_worker_and_api)

    log(f"kill batch: {h.plan.kill_jobs} jobs at {workers} workers")
    t0 = time.monotonic()
    load, _, _, done = await push(h, pusher, h.plan.kill_jobs, h.plan.concurrency, on_accepted)
    share = await step_share(h, temporal, load, h.plan.history_sample)
    return {
        "workers_before": workers,
        "killed": list(h.killed),
        "killed_after_s": round(killed_at[0] - t0, 1) if killed_at else None,
        # Webhook connections through the front, and those a dead API refused (sent on).
        "front": {"connections": front.connections, "skipped_dead_api": front.skipped}
        if (front := h.front)
        else None,
        "restarted": ["api-2"],
        "jobs": len(load.job_ids),
        "sync_runs": len(load.run_ids),
        "all_terminal_within_quiescence": done,
        "wall_s": round(time.monotonic() - t0, 1),
        "share": share,
    }


# --- exactly once ------------------------------------------------------------------------------


async def exactly_once(
    h: ScaleOut, pusher: Pusher, erp: ErpRange
) -> tuple[dict[str, Any], dict[str, int]]:
    engine = h.engine_
    jobs_open, runs_open = await asyncio.to_thread(not_terminal, engine)
    jobs = await asyncio.to_thread(db_jobs, engine)
    runs, _ = await asyncio.to_thread(db_runs, engine)
    refs: Counter[str] = Counter()
    for job in jobs:
        match = REF.search(json.dumps(job.input))
        if match:
            refs[match.group(0)] += 1
    client = pusher.client
    listed, notes = await provider_jobs(h)
    providers = provider_job_check(((j.id, j.provider, j.provider_job_id) for j in jobs), listed)
    upstream = await erp_upstream(h, erp)
    tables = await asyncio.to_thread(sync_tables, engine)
    mismatches = [
        f"{company}/{name}: {tables[company][name]['stored']} stored, {count} upstream"
        for company in COMPANIES
        for name, count in upstream[company].items()
        if tables[company][name]["stored"] != count
    ]
    duplicates = sum(t["duplicates"] for by in tables.values() for t in by.values())
    must_be_zero = {
        "jobs_not_terminal": jobs_open,
        "jobs_not_succeeded": sum(1 for j in jobs if j.status != "succeeded"),
        "accepted_jobs_missing": len(set(pusher.job_ids) - {j.id for j in jobs}),
        "jobs_created_twice": sum(n - 1 for n in refs.values() if n > 1),
        "job_creates_abandoned": client.jobs.abandoned,
        "jobs_without_exactly_one_provider_job": len(providers["not_exactly_one"]),
        "provider_jobs_for_jobs_we_do_not_have": providers["for_jobs_we_do_not_have"],
        "runs_not_terminal": runs_open,
        "runs_not_done": sum(1 for r in runs if r.status != "DONE"),
        "runs_created_twice": len(runs) - len(set(pusher.run_ids)),
        "run_creates_abandoned": client.runs.abandoned,
        "sync_row_mismatches": len(mismatches),
        "duplicate_sync_rows": duplicates,
    }
    figures = {
        "jobs": len(jobs),
        "jobs_by_status": dict(Counter(j.status for j in jobs)),
        "failed_reasons": dict(Counter((j.error or "")[:120] for j in jobs if j.error)),
        # How each job heard its provider's answer: a webhook, or only the poll fallback.
        "jobs_heard_by_webhook": sum(1 for j in jobs if j.webhook_count),
        "jobs_by_polling_only": sum(1 for j in jobs if not j.webhook_count),
        "runs": len(runs),
        "runs_by_status": dict(Counter(r.status for r in runs)),
        "provider_jobs": {k: v[:10] if isinstance(v, list) else v for k, v in providers.items()},
        "provider_notes": notes,
        "sync_row_mismatches": mismatches[:10],
        "creates": {
            "jobs": {
                "accepted": client.jobs.accepted,
                "retried": client.jobs.retries,
                "answers": dict(client.jobs.answers),
            },
            "runs": {
                "accepted": client.runs.accepted,
                "retried": client.runs.retries,
                "answers": dict(client.runs.answers),
            },
        },
    }
    return figures, must_be_zero


async def quiesce(engine: Engine, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        jobs, runs = await asyncio.to_thread(not_terminal, engine)
        if jobs == 0 and runs == 0:
            break
        await asyncio.sleep(1.0)
    return round(time.monotonic() - started, 1)


# --- the run -----------------------------------------------------------------------------------


async def scale_run(plan: Plan, keep: bool) -> dict[str, Any]:
    started = time.monotonic()
    out: dict[str, Any] = {
        "machine": machine(),
        "config": {**asdict(plan), "api_processes": 2, "database": "postgresql (private)",
                   "storage": "s3 (moto)", "providers": list(PROVIDERS),
                   "companies": COMPANIES, "worker_queues": "all (WORKER_QUEUES unset)"},
    }  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="autosync-scale-"))
    h = ScaleOut(tmp, plan)
    client: RoundRobin | None = None
    try:
        log("starting PostgreSQL, S3, the dev server, the emulators and two APIs")
        await asyncio.to_thread(h.start)
        client = RoundRobin(lambda: h.api_urls)
        erp = await erp_range(h)
        pusher = Pusher(client, erp)
        temporal = await Client.connect(h.stack_.temporal_address)
        steps = [await run_step(h, pusher, temporal, n) for n in plan.workers]
        out["steps"] = steps
        out["saturation"] = saturation(steps)
        out["saturation"]["note"] = (
            f"{psutil.cpu_count()} cores: once the dev server, PostgreSQL and the workers keep "
            "them busy, more worker processes add no CPU; a flat gain there is this machine's "
            "limit, not the task queues'."
        )
        out["kill"] = await run_kill(h, pusher, temporal)
        out["kill"]["quiescence_s"] = await quiesce(h.engine_, plan.quiescence_s)
        log("checking that every job and run ended exactly once")
        figures, must_be_zero = await exactly_once(h, pusher, erp)
        out["ledger"] = figures
        out["exactly_once"] = must_be_zero
        out["not_zero"] = sorted(k for k, v in must_be_zero.items() if v)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
    finally:
        if client is not None:
            await client.aclose()
        log("stopping everything")
        await asyncio.to_thread(h.stop)
        if keep:
            log(f"kept {tmp} (logs in logs/)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out["duration_s"] = round(time.monotonic() - started, 1)
    return out


def parse_plan(args: argparse.Namespace) -> Plan:
    plan = Plan.quick_plan() if args.quick else Plan()
    changes: dict[str, Any] = {}
    if args.workers:
        changes["workers"] = tuple(int(n) for n in args.workers.split(","))
    if args.jobs:
        changes["jobs"] = changes["kill_jobs"] = args.jobs
    if args.rows_per_view:
        changes["rows_per_view"] = args.rows_per_view
    return Plan(**{**asdict(plan), **changes})


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 workers, 30 jobs a step")
    parser.add_argument("--workers", help="worker counts, comma separated (1,2,4)")
    parser.add_argument("--jobs", type=int, help="jobs per step and in the kill batch (150)")
    parser.add_argument("--rows-per-view", type=int, help="ERP rows per view (4000)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    args = parser.parse_args()
    out = asyncio.run(scale_run(parse_plan(args), args.keep))
    print(json.dumps(out, indent=2, default=str))
    failed = "error" in out or any(out.get("exactly_once", {"missing": 1}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
