"""Autosync side by side with the seeds' cron poller and a DBOS Transact workflow; prints JSON.

    .venv/bin/python bench/peers.py [--quick] [--systems autosync,seeds,dbos] [--rate 5] …

Three systems run the same media job (a Replicate generation whose outputs must be copied to
local disk before the job counts as done), one after the other, each with its own Replicate
emulator on loopback:

- `autosync`: the stack as devstack starts it (Temporal dev server, API, worker; SQLite app
  DB, local storage), poll fallback every `--poll-interval` s.
- `seeds` (bench/peers/seeds_app.py): the old system's design in one process: POST the
  prediction, record it in SQLite, a cron every `--poll-interval` s that GETs every
  `processing` job and copies its outputs, webhooks handled by a plain route.
- `dbos` (bench/peers/dbos_app.py): the same job as a DBOS Transact workflow on a throwaway
  PostgreSQL cluster, `recv` for the webhook with the poll interval as its timeout.

Every system gets the same jobs (bench/peers/workload.py: processing times spread over 0.3-3 s,
webhooks requested for `completed` only) at each webhook loss rate of `--losses` (0 and 30 %:
those jobs' webhooks are dropped by the emulator, so only a poll finds them). Per rate:

- `burst`: `--burst-jobs` submitted at once (`--concurrency` requests in flight).
  `jobs_per_s`: stored jobs over first submit to last stored. `cpu_ms_per_job`: CPU of the
  system's processes (trees, psutil) over stored jobs, by process; `emulator` and `bench`
  (this driver) apart, `other`: the rest of the machine. `rss_mb_peak`: highest RSS sample
  per process tree during the phase, and `pss_mb_peak` the same in PSS (PostgreSQL's
  backends share their buffers: RSS counts them once per backend, PSS splits them).
- `paced`: `--paced-jobs` at `--rate`/s, the same rate for every system.
  `completion_to_stored_ms`: per stored job, the time it was stored (its record says
  succeeded) minus the emulator's completion of its prediction (the prediction's
  `/_emulator/predictions/{id}/events`), overall and split by whether its webhook was lost.
- both: `provider_calls_per_job` from the emulator's `/_emulator/stats` deltas (API requests
  by kind, output file downloads, webhooks attempted) over stored jobs.

`kill`: `--kill-jobs` at `--rate`/s with `--kill-loss` lost webhooks; halfway through the
submissions the system's own processes are SIGKILLed (autosync: API and worker; the peers:
their one process; what holds their state keeps running: Temporal, the SQLite file,
PostgreSQL) and restarted `--down-seconds` later. The driver retries a submit that failed
(same key, as `Idempotency-Key`) until it is accepted, then waits up to `--settle-seconds`.
Figures: `never_stored` (keys without a stored job), `stored_twice` (keys stored by two jobs or
two predictions), `outputs_copied_twice` (one job whose outputs were written twice),
`orphan_predictions` (predictions made for the keys whose outputs nobody stored: paid for,
lost), `predictions_per_key`, and `last_stored_after_restart_s`.

`summary` gathers the headline figures. Nothing is checked against a threshold. Figures on a
shared machine are indicative only: `machine.load_avg_1m_at_start` and `cpu_s.other` say how
busy it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.app_client import stats_delta, terminal_time
from bench.common import bounded, log, paced, rounded, summary_ms
from bench.peers.systems import STORED, SYSTEMS, TERMINAL, Row, SubmitRefused, System
from bench.peers.workload import PROCESSING_SECONDS, JobSpec, job_mix, key_of
from bench.procs import CpuMeter, machine
from devstack.postgres import PostgresServer
from providers.replicate import EMULATOR_TOKEN

API_CALLS = ("create", "get", "list", "cancel")


@dataclass
class Sizes:
    burst_jobs: int = 300
    concurrency: int = 50
    paced_jobs: int = 150
    rate: float = 5.0
    kill_jobs: int = 100
    kill_loss: float = 0.3
    down_seconds: float = 1.0
    settle_seconds: float = 180.0
    losses: list[float] = field(default_factory=lambda: [0.0, 0.3])
    poll_interval: float = 10.0
    warmup_jobs: int = 5
    seed: int = 20261130

    @classmethod
    def quick(cls) -> Sizes:
        return cls(burst_jobs=20, paced_jobs=10, kill_jobs=12, warmup_jobs=2)


# --- memory ------------------------------------------------------------------------------------


def memory_mb(pid: int) -> tuple[float, float] | None:
    """RSS and PSS of a process and its descendants, in MB (None: it is gone).

    PostgreSQL's backends each map the shared buffers, so their RSS adds shared memory up
    once per backend; PSS charges each page to its sharers in parts, so it adds up to what
    the tree really holds. For a lone Python process the two are close.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    rss = pss = 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return round(rss / 1e6, 1), round(pss / 1e6, 1)


class PeakMemory:
    """Samples the RSS and PSS of named process trees every second; keeps each peak."""

    def __init__(self, pids: dict[str, int], interval: float = 1.0) -> None:
        self._pids = pids
        self._interval = interval
        self.rss: dict[str, float] = {}
        self.pss: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        for name, pid in self._pids.items():
            measured = memory_mb(pid)
            if measured is not None:
                self.rss[name] = max(self.rss.get(name, 0.0), measured[0])
                self.pss[name] = max(self.pss.get(name, 0.0), measured[1])

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> PeakMemory:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()

    def figures(self) -> dict[str, dict[str, float]]:
        return {
            "rss_mb_peak": {**self.rss, "system": round(sum(self.rss.values()), 1)},
            "pss_mb_peak": {**self.pss, "system": round(sum(self.pss.values()), 1)},
        }


# --- driving a system ----------------------------------------------------------------------------


async def emulator_stats(system: System) -> dict[str, Any]:
    response = await system.http.get(f"{system.emulator_url}/_emulator/stats")
    response.raise_for_status()
    stats: dict[str, Any] = response.json()
    return stats


async def completion_times(system: System, prediction_ids: list[str]) -> dict[str, float]:
    """When the emulator made each prediction terminal (unix seconds)."""

    async def one(index: int) -> tuple[str, float | None]:
        pid = prediction_ids[index]
        response = await system.http.get(
            f"{system.emulator_url}/_emulator/predictions/{pid}/events"
        )
        response.raise_for_status()
        return pid, terminal_time(response.json())

    pairs = await bounded(len(prediction_ids), 20, one)
    return {pid: at for pid, at in pairs if at is not None}


async def predictions_by_key(system: System, keys: set[str]) -> dict[str, list[str]]:
    """Every prediction the emulator holds for `keys` (its list API, all pages)."""
    found: dict[str, list[str]] = {}
    url: str | None = f"{system.emulator_url}/v1/predictions"
    headers = {"Authorization": f"Bearer {EMULATOR_TOKEN}"}
    while url:
        response = await system.http.get(url, headers=headers)
        response.raise_for_status()
        page = response.json()
        for item in page.get("results") or []:
            key = key_of((item.get("input") or {}).get("prompt"))
            if key in keys:
                found.setdefault(key, []).append(str(item["id"]))
        url = page.get("next")
    return found


async def wait_settled(
    system: System, label: str, keys: set[str], within: float
) -> tuple[bool, list[Row]]:
    """Until every key has a finished job and no job is still running (or `within` passes)."""
    deadline = time.monotonic() + within
    next_log = time.monotonic() + 10.0
    while True:
        rows = await system.rows(label)
        pending = [r for r in rows if r.status not in TERMINAL]
        finished = {r.key for r in rows if r.status in TERMINAL}
        if not pending and keys <= finished:
            return True, rows
        if time.monotonic() >= deadline:
            log(f"{system.name} {label}: gave up: {len(finished)}/{len(keys)} keys finished, "
                f"{len(pending)} jobs running")  # fmt: skip
            return False, rows
        if time.monotonic() >= next_log:
            log(f"{system.name} {label}: {len(finished)}/{len(keys)} keys finished")
            next_log = time.monotonic() + 10.0
        await asyncio.sleep(0.5)


def call_figures(delta: dict[str, dict[str, int]], jobs: int) -> dict[str, Any]:
    n = jobs or 1
    requests = delta["requests"]
    api = sum(requests.get(kind, 0) for kind in API_CALLS)
    return {
        "api_calls": round(api / n, 2),
        **{kind: round(requests.get(kind, 0) / n, 2) for kind in API_CALLS},
        "file_downloads": round(requests.get("file", 0) / n, 2),
        "webhooks_attempted": round(delta["webhooks"].get("attempted", 0) / n, 2),
        "webhooks_delivered": round(delta["webhooks"].get("delivered", 0) / n, 2),
    }


async def latency_figures(
    system: System, rows: list[Row], jobs: dict[str, JobSpec]
) -> dict[str, Any]:
    stored = [r for r in rows if r.status == STORED and r.prediction_id and r.stored_at]
    done = await completion_times(system, [str(r.prediction_id) for r in stored])
    by_path: dict[str, list[float]] = {"webhook": [], "webhook_lost": []}
    for row in stored:
        completed = done.get(str(row.prediction_id))
        spec = jobs.get(row.key)
        if completed is None or spec is None or row.stored_at is None:
            continue
        by_path["webhook_lost" if spec.webhook_lost else "webhook"].append(
            row.stored_at - completed
        )
    every = by_path["webhook"] + by_path["webhook_lost"]
    return {
        **summary_ms(every),
        "webhook": summary_ms(by_path["webhook"]),
        "webhook_lost": summary_ms(by_path["webhook_lost"]),
    }


async def submit_all(
    system: System, jobs: list[JobSpec], *, rate: float | None, concurrency: int
) -> tuple[float, set[str], list[str]]:
    """Submit every job once (no retries); the wall time of the first submit, the keys
    accepted and the errors."""
    accepted: set[str] = set()
    errors: list[str] = []

    async def one(index: int) -> None:
        try:
            await system.submit(jobs[index])
            accepted.add(jobs[index].key)
        except (httpx.HTTPError, SubmitRefused) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])

    first = time.time()
    if rate is None:
        await bounded(len(jobs), concurrency, one)
    else:
        await paced(len(jobs), rate, one)
    return first, accepted, errors


async def run_phase(
    system: System, label: str, jobs: list[JobSpec], sizes: Sizes, *, rate: float | None
) -> dict[str, Any]:
    """One burst (`rate` None) or paced phase; its figures."""
    mode = "burst" if rate is None else f"paced at {rate}/s"
    lost = sum(1 for j in jobs if j.webhook_lost)
    log(f"{system.name} {label}: {len(jobs)} jobs, {mode}, {lost} webhooks lost")
    stats_before = await emulator_stats(system)
    pids = system.pids()
    meter = CpuMeter({**pids, "emulator": system.emulator_pid()})
    async with PeakMemory(pids) as memory:
        first, accepted, errors = await submit_all(
            system, jobs, rate=rate, concurrency=sizes.concurrency
        )
        within = 60 + len(jobs) * 0.5 + 3 * sizes.poll_interval
        settled, rows = await wait_settled(system, label, accepted, within)
    cpu = meter.stop()
    delta = stats_delta(stats_before, await emulator_stats(system))
    stored = [r for r in rows if r.status == STORED and r.stored_at]
    last = max((r.stored_at for r in stored if r.stored_at), default=None)
    wall = (last - first) if last else None
    n = len(stored)
    own_cpu = sum(cpu.get(name, 0.0) for name in pids)
    out: dict[str, Any] = {
        "jobs": len(jobs),
        "webhooks_lost": lost,
        "stored": n,
        "not_stored": dict(Counter(r.status for r in rows if r.status != STORED)),
        "submit_errors": {"count": len(errors), "first": errors[:3]},
        "settled": settled,
        "wall_s": rounded(wall, 2),
        "jobs_per_s": rounded(n / wall if wall else None, 2),
        "completion_to_stored_ms": await latency_figures(system, rows, {j.key: j for j in jobs}),
        "provider_calls_per_job": call_figures(delta, n),
        "cpu_s": cpu,
        "cpu_ms_per_job": {
            "system": round(1000 * own_cpu / (n or 1), 1),
            **{name: round(1000 * seconds / (n or 1), 1) for name, seconds in cpu.items()},
        },
        **memory.figures(),
    }
    latency = out["completion_to_stored_ms"]
    log(f"{system.name} {label}: {out['jobs_per_s']} jobs/s, stored p50 {latency['p50']} ms "
        f"p99 {latency['p99']} ms, {out['provider_calls_per_job']['api_calls']} API calls/job")  # fmt: skip
    return out


async def submit_retrying(system: System, job: JobSpec, deadline: float) -> tuple[bool, int]:
    """Submit until accepted (same key each time); whether it was, and how many tries failed."""
    failures = 0
    while True:
        try:
            await system.submit(job)
            return True, failures
        except (httpx.HTTPError, SubmitRefused):
            failures += 1
            if time.monotonic() >= deadline:
                return False, failures
            await asyncio.sleep(0.5)


async def run_kill(system: System, sizes: Sizes) -> dict[str, Any]:
    label = "kill"
    jobs = job_mix(label, sizes.kill_jobs, sizes.kill_loss, sizes.seed)
    kill_after = sizes.kill_jobs / 2 / sizes.rate
    log(f"{system.name} kill: {len(jobs)} jobs at {sizes.rate}/s, SIGKILL of "
        f"{'+'.join(system.killed)} after {kill_after:.1f}s")  # fmt: skip
    deadline = time.monotonic() + sizes.settle_seconds
    marks: dict[str, float] = {}

    async def killer() -> None:
        await asyncio.sleep(kill_after)
        marks["killed_at"] = time.time()
        await system.kill()
        await asyncio.sleep(sizes.down_seconds)
        started = time.monotonic()
        await system.restart()
        marks["restart_s"] = time.monotonic() - started
        marks["restarted_at"] = time.time()

    async def one(index: int) -> tuple[bool, int]:
        return await submit_retrying(system, jobs[index], deadline)

    kill_task = asyncio.create_task(killer())
    results = await paced(len(jobs), sizes.rate, one)
    await kill_task
    keys = {j.key for j in jobs}
    settled, rows = await wait_settled(system, label, keys, sizes.settle_seconds)
    stored = [r for r in rows if r.status == STORED]
    jobs_per_key = Counter(r.key for r in stored)
    predictions_per_stored_key = {
        key: {r.prediction_id for r in stored if r.key == key} for key in jobs_per_key
    }
    made = await predictions_by_key(system, keys)
    stored_predictions = {r.prediction_id for r in stored}
    last = max((r.stored_at for r in stored if r.stored_at), default=None)
    restarted = marks.get("restarted_at")
    out = {
        "jobs": len(jobs),
        "webhooks_lost": sum(1 for j in jobs if j.webhook_lost),
        "killed": list(system.killed),
        "killed_after_s": round(kill_after, 1),
        "restart_s": rounded(marks.get("restart_s"), 1),
        "submits_failed_and_retried": sum(failures for _, failures in results),
        "never_accepted": sum(1 for accepted, _ in results if not accepted),
        "settled": settled,
        "never_stored": len(keys - set(jobs_per_key)),
        "stored_twice": sum(
            1 for key in jobs_per_key
            if jobs_per_key[key] > 1 or len(predictions_per_stored_key[key]) > 1
        ),
        "outputs_copied_twice": (
            None if any(r.store_count is None for r in stored)
            else sum(1 for r in stored if (r.store_count or 0) > 1)
        ),
        "predictions_per_key": dict(sorted(Counter(
            str(len(made.get(key, []))) for key in keys
        ).items())),
        "orphan_predictions": sum(
            1 for ids in made.values() for pid in ids if pid not in stored_predictions
        ),
        "jobs_not_finished": sum(1 for r in rows if r.status not in TERMINAL),
        "last_stored_after_restart_s": (
            rounded(last - restarted, 1) if last is not None and restarted else None
        ),
    }  # fmt: skip
    log(f"{system.name} kill: never stored {out['never_stored']}, stored twice "
        f"{out['stored_twice']}, orphan predictions {out['orphan_predictions']}")  # fmt: skip
    return out


async def warm_up(system: System, sizes: Sizes) -> None:
    """A few jobs first, so imports, pools and first-use set-up are not measured."""
    jobs = job_mix("warmup", sizes.warmup_jobs, 0.0, sizes.seed)
    _, accepted, _ = await submit_all(system, jobs, rate=None, concurrency=sizes.concurrency)
    await wait_settled(system, "warmup", accepted, 60 + sizes.poll_interval)


def dump_logs(system: System, chars: int = 3000) -> None:
    for path in system.logs():
        log(f"--- {path} (last {chars} chars) ---\n{path.read_text(errors='replace')[-chars:]}")


async def run_system(name: str, data_dir: Path, sizes: Sizes) -> dict[str, Any]:
    system = SYSTEMS[name](data_dir, sizes.poll_interval)
    out: dict[str, Any] = {}
    started = time.monotonic()
    try:
        log(f"{name}: starting")
        await system.start()
        out["started_in_s"] = round(time.monotonic() - started, 1)
        out["processes"] = sorted(system.pids())
        await warm_up(system, sizes)
        for loss in sizes.losses:
            pct = round(loss * 100)
            phases: dict[str, Any] = {}
            burst = job_mix(f"l{pct}-burst", sizes.burst_jobs, loss, sizes.seed)
            phases["burst"] = await run_phase(system, f"l{pct}-burst", burst, sizes, rate=None)
            steady = job_mix(f"l{pct}-paced", sizes.paced_jobs, loss, sizes.seed)
            phases["paced"] = await run_phase(
                system, f"l{pct}-paced", steady, sizes, rate=sizes.rate
            )
            out[f"loss_{pct}"] = phases
        out["kill"] = await run_kill(system, sizes)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        dump_logs(system)
        out["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        log(f"{name}: stopping")
        await system.stop()
        await system.aclose()
    out["duration_s"] = round(time.monotonic() - started, 1)
    return out


# --- report --------------------------------------------------------------------------------------


def summary(systems: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The headline figures per system: throughput and CPU from the bursts, latency and calls
    from the paced phases, losses from the kill."""
    out: dict[str, Any] = {}
    for name, figures in systems.items():
        row: dict[str, Any] = {}
        for key, phases in figures.items():
            if not key.startswith("loss_") or not isinstance(phases, dict):
                continue
            burst, steady = phases.get("burst", {}), phases.get("paced", {})
            latency = steady.get("completion_to_stored_ms", {})
            row[key] = {
                "jobs_per_s": burst.get("jobs_per_s"),
                "stored_p50_ms": latency.get("p50"),
                "stored_p99_ms": latency.get("p99"),
                "api_calls_per_job": steady.get("provider_calls_per_job", {}).get("api_calls"),
                "cpu_ms_per_job": burst.get("cpu_ms_per_job", {}).get("system"),
                "rss_mb_peak": burst.get("rss_mb_peak", {}).get("system"),
                "pss_mb_peak": burst.get("pss_mb_peak", {}).get("system"),
            }
        kill = figures.get("kill")
        if isinstance(kill, dict):
            row["kill"] = {k: kill.get(k) for k in (
                "never_stored", "stored_twice", "outputs_copied_twice", "orphan_predictions",
                "last_stored_after_restart_s",
            )}  # fmt: skip
        if "error" in figures or "skipped" in figures:
            row["error"] = figures.get("error") or figures.get("skipped")
        out[name] = row
    return out


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def config(sizes: Sizes, quick: bool, names: list[str]) -> dict[str, Any]:
    return {
        "quick": quick,
        "systems": names,
        "sizes": asdict(sizes),
        "processing_seconds": list(PROCESSING_SECONDS),
        "webhook_events": ["completed"],
        "autosync": {"database": "sqlite", "storage": "local",
                     "temporalio": package_version("temporalio")},
        "seeds": {"database": "sqlite", "storage": "local", "cron_every_s": sizes.poll_interval},
        "dbos": {"database": "postgresql", "storage": "local", "dbos": package_version("dbos")},
    }  # fmt: skip


def dbos_unavailable() -> str | None:
    """Why the DBOS peer can't run here, or None."""
    if package_version("dbos") is None:
        return "the dbos package is not installed (the dev extra has it: `make install`)"
    if not PostgresServer.available():
        return "PostgreSQL is not installed"
    return None


async def run(sizes: Sizes, quick: bool, names: list[str], keep: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "config": config(sizes, quick, names)}
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="autosync-peers-"))
    systems: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            if name == "dbos" and (reason := dbos_unavailable()):
                systems[name] = {"skipped": reason}
                continue
            systems[name] = await run_system(name, tmp / name, sizes)
    finally:
        if keep:
            log(f"kept {tmp} (logs in */logs/)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out["summary"] = summary(systems)
    out["systems"] = systems
    out["duration_s"] = round(time.monotonic() - started, 1)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="autosync,seeds,dbos")
    parser.add_argument("--burst-jobs", type=int, help="jobs per burst phase (300)")
    parser.add_argument("--concurrency", type=int, help="submits in flight in a burst (50)")
    parser.add_argument("--paced-jobs", type=int, help="jobs per paced phase (150)")
    parser.add_argument("--rate", type=float, help="jobs/s of the paced and kill phases (5)")
    parser.add_argument("--kill-jobs", type=int, help="jobs of the kill phase (100)")
    parser.add_argument("--kill-loss", type=float, help="lost webhooks in the kill phase (0.3)")
    parser.add_argument("--down-seconds", type=float, help="killed processes stay down (1 s)")
    parser.add_argument("--settle-seconds", type=float, help="wait after a kill (180 s)")
    parser.add_argument("--losses", help="webhook loss rates, comma-separated (0,0.3)")
    parser.add_argument("--poll-interval", type=float, help="poll fallback and cron (10 s)")
    parser.add_argument("--seed", type=int, help="of the job mix")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    return parser.parse_args(argv)


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in ("burst_jobs", "concurrency", "paced_jobs", "rate", "kill_jobs", "kill_loss",
                 "down_seconds", "settle_seconds", "poll_interval", "seed"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            setattr(sizes, name, value)
    if args.losses:
        sizes.losses = [float(v) for v in args.losses.split(",") if v.strip()]
    return sizes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        print(f"unknown systems: {unknown} (known: {', '.join(SYSTEMS)})", file=sys.stderr)
        return 2
    out = asyncio.run(run(sizes_from(args), args.quick, names, args.keep))
    print(json.dumps(out, indent=2))
    failed = any("error" in figures for figures in out["systems"].values())
    return 1 if failed else 0
