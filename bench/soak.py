"""The fault soak: load and combined faults for a while, then a ledger that must balance.

    .venv/bin/python bench/soak.py [--minutes 20] [--quick] [--seed N] [--keep]

Self-contained, on loopback in a temp dir and on free ports: a private PostgreSQL and moto's
S3, each reached through a TCP proxy that can be taken down or slowed
(`devstack.tcp_proxy`), and the stack as `devstack` starts it (Temporal dev server, the
Replicate, fal, KIE and ERP emulators, the API, one worker) plus a second API process on the
same database. Progress goes to stderr, the JSON to stdout.

- Load, until the faults stop: users submit generations, edits, upscales, videos and
  trainings at Replicate, fal and KIE (KIE has none) at a steady rate, each create with its own
  `Idempotency-Key`, retried with the same key on a 5xx or a network error as a real client
  would; each company of the ERP emulator (acme, globex) runs a full-range `period` sync and an
  `incremental` one (after touching a few upstream rows) back to back; one SSE client per user
  follows `user:<id>`, reconnecting every few seconds with `Last-Event-ID`, and records every
  event id it gets.
- Faults, at random (seeded; the seed is printed), counted by kind. Per job, through the
  emulators' `input._emulator` switches: dropped, duplicated, reordered and delayed webhooks,
  provider 429s and 5xx on create, timeouts after the provider received the create
  (`latency_seconds`, and Replicate's `lost_create_responses`), output URLs that expire soon
  (`file_ttl_seconds`). On the stack: storage
  outages and slow storage (the S3 proxy down, or delaying every chunk), database outages (the
  PostgreSQL proxy down for 10 s), a worker SIGKILL and a worker SIGTERM (a new worker started
  at once), an API process SIGKILL (restarted), a Temporal dev-server restart (same process
  arguments, database file and port). `--quick` injects every kind at least once.
- Then the faults and the load stop, the soak waits for quiescence (every job and every run
  terminal, until a deadline; whatever is not is counted) and prints the ledger: jobs by status,
  provider jobs per job (from each emulator's `GET /_emulator/jobs`; the Replicate emulator's
  prediction and training lists, matched by the `job_id` in their webhook URL, where that route
  is missing), stored objects checked against their recorded sha256 and the provider's bytes
  (while the URL lives), sync rows against the ERP emulator's counts per module and company,
  duplicates, and the event stream's gaps against the `events` table.

`must_be_zero` holds every figure that must be zero; the exit status is 1 when any is not (or
the soak itself broke: `error`). `--minutes` and `--quick` (4 minutes) are the whole run's
wall time, start and quiescence included.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import signal
import tempfile
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
from botocore.exceptions import ClientError
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from bench.common import UNTHROTTLED_ENV, log
from bench.procs import machine
from core.db import sync_url
from core.models import Event, Job, SyncRun, SyncRunModule
from devstack.postgres import PostgresServer
from devstack.processes import ManagedProcess, free_port
from devstack.s3 import S3Server
from devstack.stack import ERP_COMPANY_TOKENS, ROOT, Stack, StackConfig
from devstack.tcp_proxy import TcpProxy
from providers.replicate import EMULATOR_TOKEN
from sync_modules.registry import all_modules

BUCKET = "autosync-soak"
USERS = {"ann": "soak-ann-key", "ben": "soak-ben-key", "cat": "soak-cat-key"}
ADMIN_KEY = "soak-admin-key"
COMPANIES = sorted(ERP_COMPANY_TOKENS)
PROVIDERS = ("replicate", "fal", "kie")
KIND_WEIGHTS = {"generation": 3, "edit": 1, "upscale": 1, "video": 1, "training": 1}
JOB_TERMINAL = ("succeeded", "failed", "canceled")
RUN_TERMINAL = ("DONE", "FAILED", "CANCELED", "SKIPPED")
CANCELLED = ("canceled", "cancelled")
IMAGE_URL = "https://example.com/in.png"
REF = re.compile(r"soak-\d{6}")
# The worker's provider calls time out after 30 s (worker.py): a create answered later is
# ambiguous, it may or may not have made a provider job.
SLOW_CREATE_SECONDS = 32.0
# A create whose answer is lost leaves nothing that names the provider job where jobs can't be
# looked up (fal, KIE) but its webhook: such a job waits for the webhook, then fails rather than
# creating a second one (README "Reliability"). So a slow create is not combined there with
# every delivery of the webhook dropped (real providers retry deliveries for hours; the
# emulators' drop is forever), nor with a 429 or 5xx: the emulator refuses those before it
# makes any job, and answers the refusal after the slow create's delay, past the client's
# timeout, so no job and no webhook ever exist.
SLOW_CREATE = "provider_create_timeout"
UNKNOWABLE_WITH_SLOW_CREATE = frozenset({"webhook_dropped", "provider_429", "provider_5xx"})
LOOKUP_PROVIDERS = ("replicate",)

ENV = {
    **UNTHROTTLED_ENV,
    # A dropped webhook is found by the poll fallback within seconds.
    "POLL_INTERVAL_SECONDS": "2",
    "REPLICATE_WEBHOOK_EVENTS": "start,completed",
    "REPLICATE_EMULATOR_STARTING_SECONDS": "0.3",
    "REPLICATE_EMULATOR_PROCESSING_SECONDS": "0.8",
    "REPLICATE_EMULATOR_TRAINING_PROCESSING_SECONDS": "3",
    "FAL_EMULATOR_QUEUE_SECONDS": "0.3",
    "FAL_EMULATOR_RUN_SECONDS": "0.8",
    "FAL_EMULATOR_WEBHOOK_RETRY_DELAYS": "[1, 3, 10]",
    "KIE_EMULATOR_WAITING_SECONDS": "0.2",
    "KIE_EMULATOR_QUEUING_SECONDS": "0.2",
    "KIE_EMULATOR_GENERATING_SECONDS": "0.8",
    "KIE_EMULATOR_VIDEO_GENERATING_SECONDS": "1.5",
    "KIE_EMULATOR_CALLBACK_RETRY_DELAYS": "[1, 3, 10]",
    "SYNC_MIN_INTERVAL_SECONDS": "0.02",
    "SYNC_CONCURRENCY": "2",
    "SYNC_PAGES_PER_ACTIVITY": "5",
    "SYNC_MAX_RETRIES": "5",
    # Orphans (a row whose workflow never started) are the sweep's to settle, soon enough to
    # be seen before the soak's deadline.
    "RECOVERY_MIN_AGE_MINUTES": "0.5",
}


@dataclass(frozen=True)
class Plan:
    seconds: float  # the whole run, start and quiescence included
    quick: bool
    seed: int
    jobs_per_minute: float
    quiescence_s: float
    reserve_s: float  # for the ledger and stopping everything
    rows_per_view: int
    page_size: int
    recovery_interval_minutes: float
    url_ttl_s: float
    fault_gap_s: float  # mean pause between two stack faults (full runs)
    sse_reconnect_s: tuple[float, float]

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        plan = cls._of(args)
        if args.quiescence is not None:
            plan = dataclasses.replace(plan, quiescence_s=args.quiescence)
        return plan

    @classmethod
    def _of(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            # Quiescence outlasts the copy's 90 s heartbeat timeout: a copy on a SIGKILLed
            # worker is retried only then.
            return cls(seconds=240.0, quick=True, seed=args.seed, jobs_per_minute=30.0,
                       quiescence_s=110.0, reserve_s=25.0, rows_per_view=600, page_size=100,
                       recovery_interval_minutes=0.5, url_ttl_s=20.0, fault_gap_s=0.0,
                       sse_reconnect_s=(2.0, 8.0))  # fmt: skip
        return cls(seconds=args.minutes * 60.0, quick=False, seed=args.seed,
                   jobs_per_minute=args.jobs_per_minute, quiescence_s=240.0, reserve_s=60.0,
                   rows_per_view=3000, page_size=200, recovery_interval_minutes=1.0,
                   url_ttl_s=45.0, fault_gap_s=25.0, sse_reconnect_s=(3.0, 20.0))  # fmt: skip


# --- faults ---------------------------------------------------------------------------------------


# Per-job faults: kind -> provider -> the emulator's switches for it. The emulators share one
# set of fault switches (`emulators/scaffold/faults.py`), so most kinds are the same everywhere.
def job_faults(plan: Plan) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    """The per-job fault kinds this emulator build supports, and the skipped ones with why."""

    def everywhere(switches: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {provider: dict(switches) for provider in PROVIDERS}

    kinds: dict[str, dict[str, dict[str, Any]]] = {
        "webhook_dropped": everywhere({"drop_webhooks": True}),
        "webhook_duplicated": everywhere({"duplicate_webhooks": 2}),
        "webhook_reordered": everywhere({"reorder_webhooks": True}),
        "webhook_delayed": everywhere({"webhook_delay_seconds": 4.0}),
        "provider_429": everywhere({"rate_limits": 2, "retry_after_seconds": 1}),
        "provider_5xx": everywhere({"server_errors": 2}),
        "url_expiry": everywhere({"file_ttl_seconds": plan.url_ttl_s}),
        # The create happens, its answer comes too late (the client has given up by then).
        "provider_create_timeout": everywhere({"latency_seconds": SLOW_CREATE_SECONDS}),
        "provider_lost_create_response": {"replicate": {"lost_create_responses": 1}},
    }
    return kinds, {}


STACK_FAULTS = (
    "storage_outage",
    "slow_storage",
    "db_outage",
    "worker_sigkill",
    "worker_sigterm",
    "api_kill",
    "temporal_restart",
)
# Faults that restart a process take turns; each proxy plays one fault at a time.
FAULT_GROUP = {
    "storage_outage": "s3",
    "slow_storage": "s3",
    "db_outage": "pg",
    "worker_sigkill": "process",
    "worker_sigterm": "process",
    "api_kill": "process",
    "temporal_restart": "process",
}


@dataclass
class Tally:
    faults: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    fault_log: list[dict[str, Any]] = field(default_factory=list)


# --- the stack ------------------------------------------------------------------------------------


class HasStack(Protocol):
    """What the ledger's emulator reads need: the stack (bench/scale_out.py has one too)."""

    @property
    def stack_(self) -> Stack: ...


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] if ":" in parts.netloc else parts.netloc
    return urlunsplit(parts._replace(netloc=f"{netloc}:{port}"))


class Soak:
    """The stack with its proxies, a second API, and the processes the faults start and stop."""

    def __init__(self, tmp: Path, plan: Plan) -> None:
        self.tmp = tmp
        self.plan = plan
        self.pg = PostgresServer(log_dir=tmp / "logs" / "pg")
        self.s3 = S3Server(log_dir=tmp / "logs" / "s3")
        self.pg_proxy: TcpProxy | None = None
        self.s3_proxy: TcpProxy | None = None
        self.stack: Stack | None = None
        self.api2: ManagedProcess | None = None
        self.api2_port = free_port()
        self.direct_db_url = ""  # the soak's own reads bypass the proxy
        # SIGTERMed workers finishing their work, with when they got the signal.
        self.draining: list[tuple[ManagedProcess, float]] = []
        self.engine: Engine | None = None

    # addresses

    @property
    def stack_(self) -> Stack:
        assert self.stack is not None
        return self.stack

    @property
    def api_urls(self) -> list[str]:
        return [self.stack_.api_url, f"http://127.0.0.1:{self.api2_port}"]

    def start(self) -> None:
        self.pg.start()
        self.direct_db_url = self.pg.create_database()
        self.pg_proxy = TcpProxy(f"tcp://127.0.0.1:{self.pg.port}").start()
        self.s3.start()
        self.s3.create_bucket(BUCKET)
        self.s3_proxy = TcpProxy(self.s3.endpoint_url).start()
        proxied_pg = urlsplit(self.pg_proxy.url).port
        assert proxied_pg is not None
        users = ",".join(f"{key}={user}" for user, key in USERS.items())
        env = {
            **ENV,
            "ERP_EMULATOR_ROWS_PER_VIEW": str(self.plan.rows_per_view),
            "SYNC_PAGE_SIZE": str(self.plan.page_size),
            "RECOVERY_INTERVAL_MINUTES": str(self.plan.recovery_interval_minutes),
        }
        config = StackConfig.ephemeral(
            self.tmp / "stack",
            database_url=with_port(self.direct_db_url, proxied_pg),
            storage_backend="s3",
            s3_endpoint_url=self.s3_proxy.url,
            s3_bucket=BUCKET,
            api_keys=f"{users},{ADMIN_KEY}=root:admin",
            env=env,
            log_dir=self.tmp / "logs" / "stack",
            # Two workers overlap while one drains after a SIGTERM: no fixed metrics port.
            worker_metrics_port=None,
        )
        self.stack = Stack(config)
        self.stack.start()  # migrates the database too
        self.start_api2()
        self.engine = create_engine(sync_url(self.direct_db_url), pool_size=4)

    def start_api2(self) -> None:
        args = [
            sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.api2_port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        self.api2 = ManagedProcess(
            "api-2", args, log_dir=self.stack_.log_dir, env=self.stack_.app_env(), cwd=ROOT
        )
        self.api2.start().wait_http(f"http://127.0.0.1:{self.api2_port}/v1/health")

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        for proc in [self.api2, *(worker for worker, _ in self.draining)]:
            if proc is not None:
                proc.stop(timeout=5)
        if self.stack is not None:
            self.stack.stop()
        for proxy in (self.pg_proxy, self.s3_proxy):
            if proxy is not None:
                proxy.stop()
        self.s3.stop()
        self.pg.stop()

    # stack faults (blocking; run in a thread)

    def restart_worker_hard(self) -> None:
        self.stack_.kill_worker()
        self._start_worker()

    def restart_worker_gracefully(self) -> None:
        """SIGTERM the worker and start its successor at once, as a rolling deploy does."""
        old = self.stack_.worker
        assert old is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old.pid, signal.SIGTERM)
        self.draining.append((old, time.monotonic()))
        self._start_worker()

    def _start_worker(self) -> None:
        # A worker can't start while Temporal or the database is away: try until it does.
        for attempt in range(12):
            try:
                self.stack_.start_worker()
                return
            except (RuntimeError, TimeoutError) as exc:
                if self.stack_.worker is not None:
                    self.stack_.worker.stop(timeout=5)
                log(f"worker start failed (attempt {attempt + 1}): {str(exc)[:200]}")
                time.sleep(5)
        raise RuntimeError("no worker could be started")

    def kill_api(self, which: int) -> None:
        if which == 0:
            assert self.stack_.api is not None
            self.stack_.api.kill()
            self.stack_.start_api()
        else:
            assert self.api2 is not None
            self.api2.kill()
            self.start_api2()

    def restart_temporal(self) -> None:
        assert self.stack_.temporal is not None
        self.stack_.temporal.stop()
        self.stack_.start_temporal()

    def reap_drained(self, grace: float) -> list[str]:
        """Wait until each SIGTERMed worker has had `grace` seconds to exit; those that have
        not are named (and killed)."""
        stuck: list[str] = []
        for proc, signalled in self.draining:
            while proc.alive() and time.monotonic() < signalled + grace:
                time.sleep(0.5)
            if proc.alive():
                waited = time.monotonic() - signalled
                stuck.append(f"{proc.name}: still running {waited:.0f}s after SIGTERM")
                log(f"{proc.name} still running {waited:.0f}s after SIGTERM: killed")
            proc.stop(timeout=1)
        return stuck

    def all_up(self) -> bool:
        procs = [self.stack_.worker, self.stack_.api, self.api2, self.stack_.temporal]
        return all(p is not None and p.alive() for p in procs)


class FaultDriver:
    def __init__(self, soak: Soak, plan: Plan, tally: Tally, rng: random.Random) -> None:
        self.soak = soak
        self.plan = plan
        self.tally = tally
        self.rng = rng
        self.locks = {group: asyncio.Lock() for group in set(FAULT_GROUP.values())}
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[str] = []
        self.t0 = time.monotonic()

    def schedule(self, window_s: float) -> list[tuple[float, str]]:
        """(seconds into the window, fault) for every stack fault to play; every kind at least
        once, and none starting in the window's last seconds (the faults stop with the load)."""
        if self.plan.quick:
            # Evenly spread. Early: the two that leave the most to recover from, and the
            # SIGTERM, whose worker must have exited by the time of the ledger.
            early = {"temporal_restart", "db_outage", "worker_sigterm"}
            order = sorted(STACK_FAULTS, key=lambda k: (k not in early, self.rng.random()))
            span = max(window_s - 25.0, 10.0)
            return [(3.0 + i * span / len(order), kind) for i, kind in enumerate(order)]
        schedule: list[tuple[float, str]] = []
        pending = list(STACK_FAULTS)
        self.rng.shuffle(pending)
        at = self.rng.expovariate(1 / self.plan.fault_gap_s)
        while pending or at < window_s - 40.0:
            # Each kind once first (squeezed in if the window is short), then at random.
            kind = pending.pop() if pending else self.rng.choice(STACK_FAULTS)
            schedule.append((min(at, max(window_s - 40.0, 0.0)), kind))
            at += self.rng.expovariate(1 / self.plan.fault_gap_s)
        return sorted(schedule)

    async def run(self, window_s: float) -> None:
        """Start stack faults during `window_s` seconds; returns once every one has ended."""
        started = time.monotonic()
        for at, kind in self.schedule(window_s):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            self.tasks.append(asyncio.create_task(self.inject(kind)))
        await asyncio.gather(*self.tasks)

    async def inject(self, kind: str) -> None:
        async with self.locks[FAULT_GROUP[kind]]:
            began = time.monotonic()
            log(f"fault: {kind}")
            try:
                detail = await self._inject(kind)
            except Exception as exc:
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                log(f"fault {kind} broke: {traceback.format_exc()}")
                return
            self.tally.faults[kind] += 1
            self.tally.fault_log.append({
                "kind": kind, "at_s": round(began - self.t0, 1),
                "lasted_s": round(time.monotonic() - began, 1), **detail,
            })  # fmt: skip

    async def _inject(self, kind: str) -> dict[str, Any]:
        soak = self.soak
        assert soak.pg_proxy is not None and soak.s3_proxy is not None
        if kind == "db_outage":
            soak.pg_proxy.down()
            await asyncio.sleep(10.0)
            soak.pg_proxy.up()
            return {"down_s": 10.0}
        if kind == "storage_outage":
            seconds = self.rng.uniform(4.0, 8.0)
            soak.s3_proxy.down()
            await asyncio.sleep(seconds)
            soak.s3_proxy.up()
            return {"down_s": round(seconds, 1)}
        if kind == "slow_storage":
            seconds, delay = self.rng.uniform(6.0, 12.0), self.rng.uniform(0.2, 0.6)
            soak.s3_proxy.slow(delay)
            await asyncio.sleep(seconds)
            soak.s3_proxy.slow(0.0)
            return {"slow_s": round(seconds, 1), "delay_per_chunk_s": round(delay, 2)}
        if kind == "worker_sigkill":
            await asyncio.to_thread(soak.restart_worker_hard)
            return {}
        if kind == "worker_sigterm":
            await asyncio.to_thread(soak.restart_worker_gracefully)
            return {}
        if kind == "api_kill":
            which = self.rng.randrange(2)
            await asyncio.to_thread(soak.kill_api, which)
            return {"api": which + 1}
        if kind == "temporal_restart":
            await asyncio.to_thread(soak.restart_temporal)
            return {}
        raise ValueError(kind)


# --- load -----------------------------------------------------------------------------------------


@dataclass
class Creates:
    """What the clients saw of their creates."""

    accepted: int = 0
    retries: int = 0
    abandoned: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # 4xx answers, by status
    answers: Counter[str] = field(default_factory=Counter)  # every non-2xx answer or error
    examples: list[str] = field(default_factory=list)


class Client:
    """Creates with an Idempotency-Key, retried with the same key as a real client would."""

    def __init__(self, soak: Soak, rng: random.Random, give_up_s: float) -> None:
        self.soak = soak
        self.rng = rng
        self.give_up_s = give_up_s
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(20.0, connect=5.0))
        self.jobs = Creates()
        self.runs = Creates()

    async def aclose(self) -> None:
        await self.http.aclose()

    def url(self, path: str) -> str:
        return self.rng.choice(self.soak.api_urls) + path

    async def create(self, key: str, path: str, body: dict[str, Any], tally: Creates) -> Any:
        """The created resource's JSON, or None (refused, or no answer in `give_up_s`)."""
        idem = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
        deadline = time.monotonic() + self.give_up_s
        wait = 0.5
        while True:
            problem: str
            retry_after: float | None = None
            try:
                response = await self.http.post(self.url(path), json=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            else:
                if response.status_code in (200, 201, 202):
                    tally.accepted += 1
                    return response.json()
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code == 409 and path == "/v1/sync-runs":
                        # The company's run is still going: wait for it, not an error.
                        tally.answers[problem] += 1
                        await asyncio.sleep(2.0)
                        if time.monotonic() < deadline:
                            continue
                    tally.refused[problem] += 1
                    if len(tally.examples) < 5:
                        tally.examples.append(f"{path} {problem}: {response.text[:300]}")
                    return None
                with contextlib.suppress(KeyError, ValueError):
                    retry_after = float(response.headers["Retry-After"])
            tally.answers[problem] += 1
            if time.monotonic() >= deadline:
                tally.abandoned += 1
                if len(tally.examples) < 5:
                    tally.examples.append(f"{path}: gave up after {problem}")
                return None
            tally.retries += 1
            await asyncio.sleep(retry_after if retry_after is not None else wait)
            wait = min(wait * 2, 5.0)

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


class JobLoad:
    def __init__(
        self, client: Client, plan: Plan, tally: Tally, rng: random.Random,
        faults: dict[str, dict[str, dict[str, Any]]],
    ) -> None:  # fmt: skip
        self.client = client
        self.plan = plan
        self.tally = tally
        self.rng = rng
        self.faults = faults
        # Every per-job fault kind at least once, early.
        self.forced = list(faults)
        rng.shuffle(self.forced)
        self.seq = 0
        self.submitted: Counter[str] = Counter()  # provider/kind
        self.tasks: list[asyncio.Task[None]] = []

    def next_job(self) -> tuple[str, dict[str, Any], list[str]]:
        self.seq += 1
        ref = f"soak-{self.seq:06d}"
        user = self.rng.choice(sorted(USERS))
        kinds: list[str] = []
        if self.forced:
            kinds.append(self.forced.pop())
        elif self.rng.random() < 0.5:
            kinds.append(self.rng.choice(sorted(self.faults)))
            if self.rng.random() < 0.3:
                kinds.append(self.rng.choice(sorted(self.faults)))
        providers = [p for p in PROVIDERS if all(p in self.faults[k] for k in kinds)]
        if SLOW_CREATE in kinds and UNKNOWABLE_WITH_SLOW_CREATE & set(kinds):
            providers = [p for p in providers if p in LOOKUP_PROVIDERS]
        provider = self.rng.choice(providers)
        offered = [k for k in KIND_WEIGHTS if not (provider == "kie" and k == "training")]
        kind = self.rng.choices(offered, weights=[KIND_WEIGHTS[k] for k in offered])[0]
        switches: dict[str, Any] = {}
        for fault in dict.fromkeys(kinds):
            switches.update(self.faults[fault][provider])
        job_input = job_input_for(provider, kind, user, ref)
        if switches:
            job_input["_emulator"] = switches
        body = {"kind": kind, "provider": provider, "input": job_input}
        return user, body, list(dict.fromkeys(kinds))

    async def one(self) -> None:
        user, body, kinds = self.next_job()
        self.submitted[f"{body['provider']}/{body['kind']}"] += 1
        for kind in kinds:
            self.tally.faults[kind] += 1
        await self.client.create(USERS[user], "/v1/jobs", body, self.client.jobs)

    async def run(self, stop: asyncio.Event) -> None:
        interval = 60.0 / self.plan.jobs_per_minute
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            self.tasks.append(asyncio.create_task(self.one()))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=max(0.0, start + n * interval - time.monotonic())
                )
        await asyncio.gather(*self.tasks)


def job_input_for(provider: str, kind: str, user: str, ref: str) -> dict[str, Any]:
    """A valid input for `kind` at `provider`, carrying `ref` so duplicates can be found."""
    prompt = f"{ref} a red fox in the snow"
    image = f"{IMAGE_URL}?ref={ref}"
    archive = f"https://example.com/faces.zip?ref={ref}"
    inputs: dict[str, dict[str, dict[str, Any]]] = {
        "replicate": {
            "generation": {"prompt": prompt},
            "edit": {"prompt": prompt, "input_image": image},
            "upscale": {"image": image, "scale": 2},
            "video": {"prompt": prompt},
            "training": {"destination": f"autosync/{user}-soak", "input_images": archive},
        },
        "fal": {
            "generation": {"prompt": prompt, "num_images": 1},
            "edit": {"prompt": prompt, "image_url": image},
            "upscale": {"image_url": image, "scale": 2},
            "video": {"prompt": prompt},
            "training": {"images_data_url": archive},
        },
        "kie": {
            "generation": {"prompt": prompt, "num_images": 1},
            "edit": {"prompt": prompt, "image_urls": [image]},
            "upscale": {"image_url": image, "upscale_factor": "2"},
            "video": {"prompt": prompt},
        },
    }
    return inputs[provider][kind]


@dataclass
class ErpRange:
    start: str
    end: str


class SyncLoad:
    """Per company: a full-range period run, then an incremental one, back to back."""

    def __init__(self, client: Client, soak: Soak, rng: random.Random, erp: ErpRange) -> None:
        self.client = client
        self.soak = soak
        self.rng = rng
        self.erp = erp
        self.started: list[dict[str, Any]] = []  # {id, company, mode}

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self.company(c, stop) for c in COMPANIES))

    async def company(self, company: str, stop: asyncio.Event) -> None:
        period = True
        while not stop.is_set():
            body: dict[str, Any] = {"company_id": company, "mode": "incremental"}
            if period:
                body.update(mode="period", start_date=self.erp.start, end_date=self.erp.end)
            else:
                await self.touch(company)
            run = await self.client.create(ADMIN_KEY, "/v1/sync-runs", body, self.client.runs)
            if run is None:
                await asyncio.sleep(2.0)
                continue
            self.started.append({"id": run["id"], "company": company, "mode": body["mode"]})
            period = not period
            while not stop.is_set():
                now = await self.client.get(ADMIN_KEY, f"/v1/sync-runs/{run['id']}")
                if now is not None and now["status"] in RUN_TERMINAL:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)

    async def touch(self, company: str) -> None:
        """A few upstream rows change, so the incremental run has something to copy."""
        erp = self.soak.stack_.erp_url
        views = self.rng.sample([m.view for m in all_modules().values()], k=2)
        async with httpx.AsyncClient(base_url=str(erp), timeout=10.0) as http:
            for view in views:
                with contextlib.suppress(httpx.HTTPError):
                    await http.post(f"/_emulator/rows/{company}/{view}/touch", json={"count": 5})


class EventFollower:
    """One SSE client on `user:<id>`, reconnecting every few seconds with Last-Event-ID."""

    def __init__(
        self, client: Client, user: str, baseline: int, rng: random.Random, plan: Plan
    ) -> None:
        self.client = client
        self.user = user
        self.baseline = baseline
        self.last = baseline
        self.rng = rng
        self.plan = plan
        self.seen: list[int] = []
        self.connections = 0
        self.connect_errors: Counter[str] = Counter()
        self.out_of_order = 0

    @property
    def topic(self) -> str:
        return f"user:{self.user}"

    async def run(self, stop: asyncio.Event) -> None:
        low, high = self.plan.sse_reconnect_s
        while not stop.is_set():
            await self.connect(self.rng.uniform(low, high))

    async def connect(self, seconds: float, until_id: int | None = None) -> None:
        """Read one connection for `seconds` (or until event `until_id` has come)."""
        key = USERS[self.user]
        http = self.client.http
        try:
            async with asyncio.timeout(seconds):
                token = await http.post(
                    self.client.url("/v1/stream-tokens"), headers={"Authorization": f"Bearer {key}"}
                )
                token.raise_for_status()
                async with http.stream(
                    "GET",
                    self.client.url("/v1/events"),
                    params={"topic": self.topic, "token": token.json()["token"]},
                    headers={"Last-Event-ID": str(self.last)},
                    timeout=httpx.Timeout(30.0, connect=5.0),
                ) as response:
                    response.raise_for_status()
                    self.connections += 1
                    previous = self.last
                    async for line in response.aiter_lines():
                        if not line.startswith("id:"):
                            continue
                        event_id = int(line[3:].strip())
                        if event_id <= previous:
                            self.out_of_order += 1
                        previous = event_id
                        self.seen.append(event_id)
                        self.last = max(self.last, event_id)
                        if until_id is not None and event_id >= until_id:
                            return
        except TimeoutError:
            return  # our own disconnect
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            self.connect_errors[f"HTTP {status}" if status else type(exc).__name__] += 1
            await asyncio.sleep(0.5)


# --- the ledger -----------------------------------------------------------------------------------


def db_jobs(engine: Engine) -> list[Job]:
    with Session(engine) as session:
        jobs = list(session.scalars(select(Job)))
        session.expunge_all()
        return jobs


def db_runs(engine: Engine) -> tuple[list[SyncRun], dict[str, list[SyncRunModule]]]:
    with Session(engine) as session:
        runs = list(session.scalars(select(SyncRun)))
        modules: dict[str, list[SyncRunModule]] = {}
        for module in session.scalars(select(SyncRunModule)):
            modules.setdefault(module.run_id, []).append(module)
        session.expunge_all()
        return runs, modules


def not_terminal(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        jobs = session.scalar(
            select(func.count()).select_from(Job).where(Job.status.not_in(JOB_TERMINAL))
        )
        runs = session.scalar(
            select(func.count()).select_from(SyncRun).where(SyncRun.status.not_in(RUN_TERMINAL))
        )
        return int(jobs or 0), int(runs or 0)


def topic_event_ids(engine: Engine, topic: str, after: int) -> list[int]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(Event.id).where(Event.topic == topic, Event.id > after).order_by(Event.id)
            )
        )


def event_topics(engine: Engine, ids: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    with Session(engine) as session:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for event_id, topic in session.execute(
                select(Event.id, Event.topic).where(Event.id.in_(chunk))
            ):
                found[int(event_id)] = str(topic)
    return found


def sync_tables(engine: Engine) -> dict[str, dict[str, dict[str, int]]]:
    """Per company and module: rows stored, and (company, external id) pairs seen twice."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    with Session(engine) as session:
        for name, module in all_modules().items():
            table = module.table
            for company in COMPANIES:
                stored = session.scalar(
                    select(func.count()).select_from(table).where(table.c.company_id == company)
                )
                twice = (
                    select(table.c.external_id)
                    .where(table.c.company_id == company)
                    .group_by(table.c.external_id)
                    .having(func.count() > 1)
                    .subquery()
                )
                dupes = session.scalar(select(func.count()).select_from(twice))
                out.setdefault(company, {})[name] = {
                    "stored": int(stored or 0),
                    "duplicates": int(dupes or 0),
                }
    return out


async def provider_jobs(
    soak: HasStack,
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[str]]:
    """Per provider: our job id -> the provider jobs carrying it; and notes on what's unknown."""
    stack = soak.stack_
    urls = {name: stack.provider_url(name) for name in PROVIDERS}
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    notes: list[str] = []
    async with httpx.AsyncClient(timeout=60.0) as http:
        for provider, base in urls.items():
            response = await http.get(f"{base}/_emulator/jobs")
            if response.status_code == 200:
                found[provider] = {
                    job_id: list(items) for job_id, items in response.json()["jobs"].items()
                }
                continue
            if provider != "replicate":
                notes.append(
                    f"{provider}: the emulator has no GET /_emulator/jobs yet; its provider "
                    "jobs per job are not counted"
                )
                continue
            notes.append(
                "replicate: no GET /_emulator/jobs yet; counted from /v1/predictions and "
                "/v1/trainings by the job_id in each webhook URL"
            )
            by_job: dict[str, list[dict[str, Any]]] = {}
            auth = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}
            for listing in ("/v1/predictions", "/v1/trainings"):
                url: str | None = f"{base}{listing}"
                while url:
                    page = (await http.get(url, headers=auth)).json()
                    for item in page["results"]:
                        job_id = parse_qs(urlsplit(item.get("webhook") or "").query).get(
                            "job_id", [None]
                        )[0]
                        if job_id:
                            by_job.setdefault(job_id, []).append(
                                {"id": item["id"], "status": item["status"]}
                            )
                    url = page["next"]
            found[provider] = by_job
    return found, notes


def was_cancelled(item: dict[str, Any]) -> bool:
    """A provider job ended by a cancel (`canceled` where the emulator says; fal's status
    doesn't tell)."""
    return bool(item.get("canceled")) or str(item.get("status", "")).lower() in CANCELLED


@dataclass
class ObjectCheck:
    objects: int = 0
    missing: list[str] = field(default_factory=list)
    sha_mismatch: list[str] = field(default_factory=list)
    provider_mismatch: list[str] = field(default_factory=list)
    provider_checked: int = 0
    provider_url_gone: int = 0
    jobs_missing_object: set[str] = field(default_factory=set)


async def check_objects(soak: Soak, jobs: list[Job]) -> ObjectCheck:
    """Every succeeded job's stored objects, read from S3 itself (not through the proxy)."""
    check = ObjectCheck()
    s3 = soak.s3.client()

    def read(bucket: str, key: str) -> bytes | None:
        try:
            body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    async with httpx.AsyncClient(timeout=30.0) as http:
        for job in jobs:
            if job.status != "succeeded":
                continue
            bucket = job.storage_bucket or BUCKET
            for output in job.outputs or []:
                keys = [(output["key"], output.get("sha256"))]
                thumbnail = output.get("thumbnail")
                if isinstance(thumbnail, dict) and thumbnail.get("key"):
                    keys.append((thumbnail["key"], None))
                stored_sha: str | None = None
                for key, recorded in keys:
                    check.objects += 1
                    data = await asyncio.to_thread(read, bucket, key)
                    if data is None:
                        check.missing.append(f"{job.id}: {key}")
                        check.jobs_missing_object.add(job.id)
                        continue
                    sha = hashlib.sha256(data).hexdigest()
                    if recorded is not None:
                        stored_sha = sha
                        if sha != recorded:
                            check.sha_mismatch.append(f"{job.id}: {key}")
                source = output.get("source_url")
                if stored_sha is None or not source:
                    continue
                try:
                    response = await http.get(source)
                except httpx.HTTPError:
                    check.provider_url_gone += 1
                    continue
                if response.status_code != 200:
                    check.provider_url_gone += 1
                    continue
                check.provider_checked += 1
                if hashlib.sha256(response.content).hexdigest() != stored_sha:
                    check.provider_mismatch.append(f"{job.id}: {output['key']}")
    return check


async def erp_upstream(soak: HasStack, erp: ErpRange) -> dict[str, dict[str, int]]:
    base = soak.stack_.erp_url
    out: dict[str, dict[str, int]] = {}
    async with httpx.AsyncClient(base_url=str(base), timeout=30.0) as http:
        for company in COMPANIES:
            for name, module in all_modules().items():
                response = await http.get(
                    f"/v1/companies/{company}/views/{module.view}/count",
                    params={"start_date": erp.start, "end_date": erp.end},
                    headers={"Authorization": f"Bearer {ERP_COMPANY_TOKENS[company]}"},
                )
                response.raise_for_status()
                out.setdefault(company, {})[name] = int(response.json()["count"])
    return out


async def erp_range(soak: HasStack) -> ErpRange:
    async with httpx.AsyncClient(timeout=30.0) as http:
        info = (await http.get(f"{soak.stack_.erp_url}/_emulator/info")).json()
    start = date.fromisoformat(info["data_start"])
    end = start + timedelta(days=int(info["data_days"]) - 1)
    return ErpRange(start.isoformat(), end.isoformat())


async def ledger(
    soak: Soak, erp: ErpRange, followers: list[EventFollower]
) -> tuple[dict[str, Any], dict[str, int], list[str]]:
    engine = soak.engine
    assert engine is not None
    notes: list[str] = []
    jobs = await asyncio.to_thread(db_jobs, engine)
    runs, run_modules = await asyncio.to_thread(db_runs, engine)
    out: dict[str, Any] = {}

    # Jobs by status, and what is not terminal.
    by_status: Counter[str] = Counter(job.status for job in jobs)
    by_kind: dict[str, Counter[str]] = {}
    for job in jobs:
        by_kind.setdefault(f"{job.provider}/{job.kind}", Counter())[job.status] += 1
    stuck = [job for job in jobs if job.status not in JOB_TERMINAL]
    failed_reasons: Counter[str] = Counter(
        (job.error or "")[:120] for job in jobs if job.status == "failed"
    )
    out["jobs"] = {
        "total": len(jobs),
        "by_status": dict(sorted(by_status.items())),
        "by_provider_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        "not_terminal": [f"{j.id} {j.provider}/{j.kind} {j.status}" for j in stuck][:20],
        "failed_reasons": dict(failed_reasons.most_common(10)),
        "needs_regeneration": sum(1 for j in jobs if j.recovery_state == "needs_regeneration"),
    }

    # One job row per create, whatever the retries: each create's input carries its own ref.
    refs: Counter[str] = Counter()
    for job in jobs:
        match = REF.search(json.dumps(job.input))
        if match:
            refs[match.group(0)] += 1
    duplicate_jobs = sum(n - 1 for n in refs.values() if n > 1)

    # Provider jobs per job.
    listed, provider_notes = await provider_jobs(soak)
    notes += provider_notes
    known = {job.id for job in jobs}
    not_one: list[str] = []
    extra_live = 0
    extra_cancelled = 0
    for_unknown = 0
    checked = 0
    per_job: Counter[int] = Counter()
    for job in jobs:
        if job.provider not in listed:
            continue
        items = listed[job.provider].get(job.id, [])
        if not items and not job.provider_job_id:
            continue  # never reached the provider
        checked += 1
        ids = {item["id"] for item in items}
        extras = [item for item in items if item["id"] != job.provider_job_id]
        cancelled = [item for item in extras if was_cancelled(item)]
        extra_cancelled += len(cancelled)
        extra_live += len(extras) - len(cancelled)
        per_job[len(items) - len(cancelled)] += 1
        if len(extras) > len(cancelled) or (job.provider_job_id and job.provider_job_id not in ids):
            not_one.append(
                f"{job.id} {job.provider}/{job.kind} {job.status}: ours "
                f"{job.provider_job_id}, provider {[(i['id'], i['status']) for i in items]}"
            )
    for by_job in listed.values():
        for job_id, items in by_job.items():
            if job_id not in known:
                for_unknown += sum(1 for i in items if not was_cancelled(i))
    out["provider_jobs"] = {
        "jobs_checked": checked,
        "jobs_by_live_provider_jobs": {str(k): v for k, v in sorted(per_job.items())},
        "extra_cancelled": extra_cancelled,
        "extra_not_cancelled": extra_live,
        "for_jobs_we_do_not_have": for_unknown,
        "examples": not_one[:10],
    }

    # Stored objects.
    objects = await check_objects(soak, jobs)
    no_outputs = [j for j in jobs if j.status == "succeeded" and not (j.outputs or [])]
    by_kind_no_outputs = Counter(f"{j.provider}/{j.kind}" for j in no_outputs)
    out["storage"] = {
        "objects_checked": objects.objects,
        "missing": objects.missing[:10],
        "sha256_mismatch_recorded": objects.sha_mismatch[:10],
        "sha256_mismatch_provider": objects.provider_mismatch[:10],
        "compared_with_provider_bytes": objects.provider_checked,
        "provider_url_expired_at_check": objects.provider_url_gone,
        "succeeded_without_outputs": dict(by_kind_no_outputs),
    }

    # Sync runs and rows.
    upstream = await erp_upstream(soak, erp)
    tables = await asyncio.to_thread(sync_tables, engine)
    run_status: Counter[str] = Counter(f"{r.mode}/{r.status}" for r in runs)
    runs_stuck = [f"{r.id} {r.company_id} {r.mode} {r.status}" for r in runs
                  if r.status not in RUN_TERMINAL]  # fmt: skip
    full_range = (date.fromisoformat(erp.start), date.fromisoformat(erp.end))
    done_period = {r.company_id for r in runs if r.mode == "period" and r.status == "DONE"
                   and (r.start_date, r.end_date) == full_range}  # fmt: skip
    rows: dict[str, dict[str, dict[str, int]]] = {}
    row_mismatch: list[str] = []
    unverified = [c for c in COMPANIES if c not in done_period]
    duplicate_rows = 0
    for company in COMPANIES:
        for name, count in upstream[company].items():
            stored = tables[company][name]
            rows.setdefault(company, {})[name] = {"upstream": count, **stored}
            duplicate_rows += stored["duplicates"]
            if company in done_period and stored["stored"] != count:
                row_mismatch.append(
                    f"{company}/{name}: {stored['stored']} stored, {count} upstream"
                )
    count_mismatch: list[str] = []
    for r in runs:
        if r.mode != "period" or r.status != "DONE":
            continue
        for module in run_modules.get(r.id, []):
            counted = module.processed + module.skipped
            expected = upstream[r.company_id].get(module.module)
            if expected is not None and counted != expected:
                count_mismatch.append(f"run {r.id} {r.company_id}/{module.module}: counted "
                                      f"{counted}, upstream {expected}")  # fmt: skip
    out["sync"] = {
        "runs": len(runs),
        "by_mode_status": dict(sorted(run_status.items())),
        "failed_reasons": dict(
            Counter((r.error_message or "")[:160] for r in runs if r.status == "FAILED")
        ),
        "not_terminal": runs_stuck[:10],
        "rows": rows,
        "row_mismatches": row_mismatch[:10],
        "companies_without_a_done_full_period_run": unverified,
        "run_count_mismatches": count_mismatch[:10],
    }

    # The event stream.
    events: dict[str, Any] = {}
    gaps = undelivered = duplicates = foreign = out_of_order = 0
    for follower in followers:
        expected_ids = await asyncio.to_thread(
            topic_event_ids, engine, follower.topic, follower.baseline
        )
        seen = set(follower.seen)
        last = max(seen) if seen else follower.baseline
        missing = [i for i in expected_ids if i <= last and i not in seen]
        late = [i for i in expected_ids if i > last]
        not_theirs = [i for i in seen if i not in set(expected_ids)]
        if not_theirs:
            topics = await asyncio.to_thread(event_topics, engine, not_theirs)
            not_theirs = [i for i in not_theirs if topics.get(i) != follower.topic]
        gaps += len(missing)
        undelivered += len(late)
        duplicates += len(follower.seen) - len(seen)
        foreign += len(not_theirs)
        out_of_order += follower.out_of_order
        events[follower.topic] = {
            "events_in_db": len(expected_ids),
            "received": len(follower.seen),
            "connections": follower.connections,
            "connect_errors": dict(follower.connect_errors),
            "gaps": missing[:10],
            "not_delivered_by_the_end": late[:10],
        }
    out["events"] = events

    must_be_zero = {
        "jobs_not_terminal": len(stuck),
        "duplicate_jobs_per_create": duplicate_jobs,
        "jobs_without_exactly_one_provider_job": len(not_one),
        "extra_provider_jobs_not_cancelled": extra_live,
        "provider_jobs_for_jobs_we_do_not_have": for_unknown,
        "stored_objects_sha256_mismatch": len(objects.sha_mismatch),
        "stored_objects_not_provider_bytes": len(objects.provider_mismatch),
        "succeeded_jobs_with_missing_object": len(objects.jobs_missing_object),
        "succeeded_jobs_without_stored_outputs": len(no_outputs),
        "sync_row_mismatches": len(row_mismatch),
        "sync_companies_unverified": len(unverified),
        "sync_run_count_mismatches": len(count_mismatch),
        "duplicate_sync_rows": duplicate_rows,
        "runs_not_terminal": len(runs_stuck),
        "event_gaps": gaps,
        "events_not_delivered_by_the_end": undelivered,
        "events_delivered_twice": duplicates,
        "events_out_of_order": out_of_order,
        "events_of_another_topic": foreign,
    }
    return out, must_be_zero, notes


# --- the run --------------------------------------------------------------------------------------


async def verify_sync(client: Client, soak: Soak, erp: ErpRange, within: float) -> list[str]:
    """A full-range period run, now that the faults have stopped, for each company that had
    none end DONE during the soak (so its rows can be checked); the companies it was run for."""
    assert soak.engine is not None
    runs, _ = await asyncio.to_thread(db_runs, soak.engine)
    full = (date.fromisoformat(erp.start), date.fromisoformat(erp.end))
    done = {
        r.company_id
        for r in runs
        if r.mode == "period" and r.status == "DONE" and (r.start_date, r.end_date) == full
    }
    missing = [c for c in COMPANIES if c not in done]  # fmt: skip
    deadline = time.monotonic() + within

    async def one(company: str) -> None:
        body = {"company_id": company, "mode": "period", "start_date": erp.start,
                "end_date": erp.end}  # fmt: skip
        run = await client.create(ADMIN_KEY, "/v1/sync-runs", body, client.runs)
        while run is not None and time.monotonic() < deadline:
            now = await client.get(ADMIN_KEY, f"/v1/sync-runs/{run['id']}")
            if now is not None and now["status"] in RUN_TERMINAL:
                return
            await asyncio.sleep(1.0)

    if missing:
        log(f"no full period run ended DONE during the soak for {missing}: one more each")
        await asyncio.gather(*(one(c) for c in missing))
    return missing


async def quiesce(soak: Soak, deadline: float) -> tuple[bool, float]:
    engine = soak.engine
    assert engine is not None
    started = time.monotonic()
    next_log = started
    while True:
        try:
            jobs, runs = await asyncio.to_thread(not_terminal, engine)
        except Exception as exc:  # the database is ours and up; say so if it is not
            log(f"quiescence: {type(exc).__name__}: {exc}")
            jobs = runs = -1
        if jobs == 0 and runs == 0:
            return True, time.monotonic() - started
        if time.monotonic() >= deadline:
            log(f"quiescence: gave up with {jobs} jobs and {runs} runs not terminal")
            return False, time.monotonic() - started
        if time.monotonic() >= next_log:
            log(f"quiescence: {jobs} jobs and {runs} runs not terminal yet")
            next_log = time.monotonic() + 5.0
        await asyncio.sleep(1.0)


def rng(plan: Plan, part: str) -> random.Random:
    """Each part of the soak draws from its own generator: what the fault driver picks
    doesn't depend on how the load's tasks interleave."""
    return random.Random(f"{plan.seed}/{part}")


async def soak_run(plan: Plan, keep: bool) -> dict[str, Any]:
    t0 = time.monotonic()
    log(f"seed {plan.seed}")
    tally = Tally()
    faults, skipped = job_faults(plan)
    out: dict[str, Any] = {
        "seed": plan.seed,
        "machine": machine(),
        "config": {
            "quick": plan.quick, "planned_s": plan.seconds,
            "database": "postgresql (private, through a TCP proxy)",
            "storage": "s3 (moto, through a TCP proxy)",
            "api_processes": 2, "users": sorted(USERS), "companies": COMPANIES,
            "jobs_per_minute": plan.jobs_per_minute, "erp_rows_per_view": plan.rows_per_view,
            "url_ttl_s": plan.url_ttl_s,
        },
    }  # fmt: skip
    for kind, why in skipped.items():
        tally.notes.append(f"fault {kind} skipped: {why}")
    tmp = Path(tempfile.mkdtemp(prefix="autosync-soak-"))
    soak = Soak(tmp, plan)
    client: Client | None = None
    phases: dict[str, float] = {}
    try:
        log("starting PostgreSQL, S3, their proxies and the stack")
        await asyncio.to_thread(soak.start)
        phases["start_s"] = round(time.monotonic() - t0, 1)
        erp = await erp_range(soak)
        client = Client(soak, rng(plan, "client"), give_up_s=90.0 if plan.quick else 180.0)
        latest = await client.get(ADMIN_KEY, "/v1/events/latest")
        baseline = int(latest["id"]) if latest else 0

        window = plan.seconds - (time.monotonic() - t0) - plan.quiescence_s - plan.reserve_s
        window = max(window, 60.0)
        log(f"load and faults for {window:.0f}s")
        stop = asyncio.Event()
        driver = FaultDriver(soak, plan, tally, rng(plan, "faults"))
        jobs = JobLoad(client, plan, tally, rng(plan, "jobs"), faults)
        syncs = SyncLoad(client, soak, rng(plan, "sync"), erp)
        followers = [
            EventFollower(client, user, baseline, rng(plan, f"events-{user}"), plan)
            for user in sorted(USERS)
        ]
        stop_followers = asyncio.Event()
        loads = [asyncio.create_task(jobs.run(stop)), asyncio.create_task(syncs.run(stop))]
        follows = [asyncio.create_task(f.run(stop_followers)) for f in followers]
        load_started = time.monotonic()
        faulting = asyncio.create_task(driver.run(window))
        await asyncio.sleep(window)
        stop.set()
        log("load stopped; waiting for the faults in progress to end")
        await faulting
        await asyncio.gather(*loads)
        load_s = time.monotonic() - load_started
        phases["load_s"] = round(load_s, 1)
        if driver.errors:
            # A fault that could not be played (or undone): the soak can't vouch for the run.
            out["error"] = f"faults broke: {driver.errors}"
        if not soak.all_up():
            tally.notes.append("a stack process was not running when the faults stopped")

        quiesce_deadline = time.monotonic() + plan.quiescence_s
        quiet, waited = await quiesce(soak, quiesce_deadline)
        phases["quiescence_s"] = round(waited, 1)
        rerun = await verify_sync(client, soak, erp, within=max(plan.quiescence_s - waited, 45.0))
        stop_followers.set()
        await asyncio.gather(*follows)
        # A last catch-up per client, to the newest event of its topic.
        assert soak.engine is not None
        for follower in followers:
            ids = await asyncio.to_thread(
                topic_event_ids, soak.engine, follower.topic, follower.last
            )
            if ids:
                await follower.connect(10.0, until_id=ids[-1])
        # A SIGTERMed worker drains for WORKER_GRACEFUL_SHUTDOWN_SECONDS (30), then exits.
        not_exited = await asyncio.to_thread(soak.reap_drained, 45.0)

        ledger_started = time.monotonic()
        log("reading the ledger")
        figures, must_be_zero, notes = await ledger(soak, erp, followers)
        figures["sync"]["verified_by_a_run_after_the_faults"] = rerun
        figures["sigterm"] = {"workers_signalled": len(soak.draining),
                              "not_exited_45s_after": not_exited}  # fmt: skip
        must_be_zero["sigtermed_workers_not_exited"] = len(not_exited)
        phases["ledger_s"] = round(time.monotonic() - ledger_started, 1)
        tally.notes += notes
        minutes = load_s / 60.0
        out["load"] = {
            "window_s": round(load_s, 1),
            "jobs_submitted": sum(jobs.submitted.values()),
            "jobs_accepted": client.jobs.accepted,
            "jobs_per_minute": round(client.jobs.accepted / minutes, 1) if minutes else None,
            "jobs_by_provider_kind": dict(sorted(jobs.submitted.items())),
            "job_creates": {
                "retried": client.jobs.retries,
                "abandoned": client.jobs.abandoned,
                "refused": dict(client.jobs.refused),
                "answers": dict(client.jobs.answers),
                "examples": client.jobs.examples,
            },
            "sync_runs_started": Counter(f"{r['company']}/{r['mode']}" for r in syncs.started),
            "sync_runs_per_minute": round(len(syncs.started) / minutes, 1) if minutes else None,
            "sync_creates": {
                "retried": client.runs.retries,
                "abandoned": client.runs.abandoned,
                "refused": dict(client.runs.refused),
                "answers": dict(client.runs.answers),
                "examples": client.runs.examples,
            },
            "sse_connections": sum(f.connections for f in followers),
        }
        out["faults"] = {
            "injected": dict(sorted(tally.faults.items())),
            "skipped": skipped,
            "timeline": tally.fault_log,
        }
        out["quiescent"] = quiet
        out["ledger"] = figures
        out["must_be_zero"] = must_be_zero
        out["not_zero"] = sorted(k for k, v in must_be_zero.items() if v)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
    finally:
        if client is not None:
            await client.aclose()
        log("stopping everything")
        await asyncio.to_thread(soak.stop)
        if keep:
            log(f"kept {tmp} (logs in logs/)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out["notes"] = tally.notes
    out["phases"] = phases
    out["duration_s"] = round(time.monotonic() - t0, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="whole run, wall time")
    parser.add_argument("--quick", action="store_true", help="4 minutes, lighter load, every fault")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--jobs-per-minute", type=float, default=60.0, help="full runs")
    parser.add_argument(
        "--quiescence", type=float, default=None,
        help="seconds to wait for every job and run to end (quick 45, full 240)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    out = asyncio.run(soak_run(Plan.of(args), args.keep))
    print(json.dumps(out, indent=2, default=str))
    failed = "error" in out or any((out.get("must_be_zero") or {}).values())
    if "must_be_zero" not in out:
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
