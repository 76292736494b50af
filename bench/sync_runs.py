"""Sync runs (SyncRunWorkflow) against the ERP emulator on PostgreSQL; prints one JSON object.

    .venv/bin/python bench/sync_runs.py [--rows 50000] [--quick] [--keep]

Everything runs on loopback in a temp dir, on free ports: a private PostgreSQL
(`devstack.postgres`) and the stack as `devstack` starts it (Temporal dev server, Replicate
and ERP emulators, API, worker). The Temporal server stays up for the whole bench; for every
phase the ERP emulator, API and worker are restarted with that phase's settings and a fresh,
migrated database. Progress goes to stderr, the JSON to stdout. No figure is checked against
a threshold except in `targets`, which only reports.

- `unlimited.runs`: per `SYNC_CONCURRENCY` (1, 2, 3), a `period` run of all six modules of
  `acme` over the whole data range (2024-01-01..2025-12-31) with `--rows` rows per view,
  `SYNC_PAGE_SIZE=--page-size`, no upstream rate limit, POSTed to /v1/sync-runs.
  `rows` = sum of the modules' processed + skipped, cross-checked against the emulator's
  `/count` (`upstream_rows`) and `SELECT count(*)` of the modules' tables (`stored_rows`);
  `wall_s` from the POST to the run's `finished_at`; `cpu_s` per process tree during the run
  (`other`: the rest of the machine); `history_events` of the run's workflow.
- `plain`: the same sync without Temporal (bench/sync_plain.py) in this process, per
  concurrency, against the same emulator into a fresh database; `overhead_pct =
  (plain_rows_per_s / run_rows_per_s - 1) * 100` at the concurrency of the best run.
- `rate_limited`: `SYNC_MIN_INTERVAL_SECONDS=0.1` (10 requests/s), `--rl-rows` per view in
  pages of `--rl-page-size`; `achieved_rps` = list requests the emulator served / wall time
  of the run; `active_rps` the same over the seconds in which the emulator served requests;
  `max_served_per_second` from `/_emulator/stats`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select
from temporalio.client import Client

from bench.common import UNTHROTTLED_ENV, log, rounded
from bench.procs import CpuMeter, machine
from bench.sync_plain import plain_sync
from core.contracts import sync_run_workflow_id
from core.db import sync_url
from core.migrate import upgrade
from devstack.postgres import PostgresServer
from devstack.stack import ERP_COMPANY_TOKENS, Stack, StackConfig
from sync_modules.registry import all_modules

ADMIN_KEY = "admin-key"
COMPANY = "acme"
START_DATE, END_DATE = "2024-01-01", "2025-12-31"  # the emulator's whole data range
TERMINAL = ("DONE", "FAILED", "CANCELED", "SKIPPED")
RATE_LIMIT_RPS = 10.0


@dataclass
class Sizes:
    rows: int = 50_000
    page_size: int = 1000
    concurrencies: list[int] = field(default_factory=lambda: [1, 2, 3])
    rl_rows: int = 8000
    rl_page_size: int = 200
    rl_concurrency: int = 6
    pages_per_activity: int = 10

    @classmethod
    def quick(cls) -> Sizes:
        return cls(rows=2000, page_size=500, concurrencies=[1, 2], rl_rows=1000)


# --- stack ---------------------------------------------------------------------------------------


def phase_env(
    *, rows: int, page_size: int, concurrency: int, interval: float, pages_per_activity: int
) -> dict[str, str]:
    return {
        "ERP_EMULATOR_ROWS_PER_VIEW": str(rows),
        "ERP_EMULATOR_DATA_START": START_DATE,  # pinned: the default window rolls
        "SYNC_PAGE_SIZE": str(page_size),
        "SYNC_PAGES_PER_ACTIVITY": str(pages_per_activity),
        "SYNC_CONCURRENCY": str(concurrency),
        "SYNC_MIN_INTERVAL_SECONDS": str(interval),
        "SYNC_MAX_RETRIES": "3",
        **UNTHROTTLED_ENV,
    }


def reconfigure(stack: Stack, phase: str, env: dict[str, str], database_url: str) -> None:
    """Restart the ERP emulator, API and worker with `env` on `database_url` (Temporal stays).

    Each phase logs to its own directory, so waiting for the worker's "ready" line never
    matches an earlier worker's.
    """
    for proc in (stack.worker, stack.api, stack.erp):
        if proc is not None:
            proc.stop()
    stack.config.env = env
    stack.config.database_url = database_url
    stack.log_dir = stack.data_dir / "logs" / phase
    upgrade(database_url)
    stack.start_erp()
    stack.start_api()
    stack.start_worker()


def stack_pids(stack: Stack, pg: PostgresServer) -> dict[str, int]:
    procs = {"temporal": stack.temporal, "worker": stack.worker, "api": stack.api,
             "erp_emulator": stack.erp}  # fmt: skip
    pids = {name: proc.pid for name, proc in procs.items() if proc is not None}
    if pg.pid is not None:
        pids["postgres"] = pg.pid
    return pids


def dump_logs(stack: Stack, chars: int = 3000) -> None:
    """The end of every log of the stack, to stderr, when something went wrong."""
    for path in sorted((stack.data_dir / "logs").rglob("*.log")):
        tail = path.read_text(errors="replace")[-chars:]
        log(f"--- {path} (last {chars} chars) ---\n{tail}")


# --- one run through the API ---------------------------------------------------------------------


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def start_and_wait(stack: Stack, within: float) -> tuple[dict[str, Any], float, float]:
    """POST a period run of every module; (final run, wall to finished_at, wall to seen)."""
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30.0
    ) as api:
        body = {"company_id": COMPANY, "mode": "period", "start_date": START_DATE,
                "end_date": END_DATE}  # fmt: skip
        posted_at = time.time()
        posted_mono = time.monotonic()
        response = await api.post("/v1/sync-runs", json=body)
        if response.status_code != 202:
            raise RuntimeError(f"POST /v1/sync-runs: {response.status_code} {response.text}")
        run_id = response.json()["id"]
        deadline = posted_mono + within
        last_log = posted_mono
        while True:
            run: dict[str, Any] = (await api.get(f"/v1/sync-runs/{run_id}")).json()
            now = time.monotonic()
            if run["status"] in TERMINAL:
                seen_wall = now - posted_mono
                break
            if now > deadline:
                raise TimeoutError(f"run {run_id} not finished after {within:.0f}s: {run}")
            if now - last_log > 5:
                last_log = now
                done = sum(m["processed"] + m["skipped"] for m in run["modules"].values())
                log(f"  run {run_id[:8]} {run['status']}: {done} rows so far")
            await asyncio.sleep(0.5)  # `wall_s` comes from finished_at, not from this
    if run["status"] != "DONE":
        raise RuntimeError(f"run {run_id} ended {run['status']}: {run.get('error_message')}")
    finished = run.get("finished_at")
    wall = parse_time(finished) - posted_at if finished else seen_wall
    return run, wall, seen_wall


async def history_events(stack: Stack, run_id: str) -> int:
    """Events in the run's workflow history; the client lives only in here."""
    client = await Client.connect(stack.temporal_address)
    try:
        history = await asyncio.wait_for(
            client.get_workflow_handle(sync_run_workflow_id(run_id)).fetch_history(), timeout=60
        )
        return len(history.events)
    finally:
        # temporalio's Client has no close(): dropping the last reference closes the channel.
        del client


async def upstream_rows(stack: Stack) -> int:
    """What the emulator says the run had to copy: `/count` of every view over the range."""
    assert stack.erp_url is not None
    total = 0
    async with httpx.AsyncClient(base_url=stack.erp_url, timeout=30.0) as erp:
        for module in all_modules().values():
            response = await erp.get(
                f"/v1/companies/{COMPANY}/views/{module.view}/count",
                params={"start_date": START_DATE, "end_date": END_DATE},
                headers={"Authorization": f"Bearer {ERP_COMPANY_TOKENS[COMPANY]}"},
            )
            response.raise_for_status()
            total += int(response.json()["count"])
    return total


def stored_rows(database_url: str) -> int:
    """`SELECT count(*)` of every module's table for the company."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            return sum(
                int(
                    connection.scalar(
                        select(func.count())
                        .select_from(module.table)
                        .where(module.table.c.company_id == COMPANY)
                    )
                    or 0
                )
                for module in all_modules().values()
            )
    finally:
        engine.dispose()


async def erp_stats(stack: Stack) -> dict[str, Any]:
    assert stack.erp_url is not None
    async with httpx.AsyncClient(base_url=stack.erp_url, timeout=30.0) as erp:
        response = await erp.get("/_emulator/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats


async def warm_erp(stack: Stack) -> float:
    """Have the emulator serialize every row first; the seconds it took (not part of any run)."""
    assert stack.erp_url is not None
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=stack.erp_url, timeout=600.0) as erp:
        (await erp.post(f"/_emulator/warm/{COMPANY}")).raise_for_status()
    return round(time.monotonic() - started, 2)


async def reset_erp(stack: Stack) -> None:
    assert stack.erp_url is not None
    async with httpx.AsyncClient(base_url=stack.erp_url, timeout=30.0) as erp:
        (await erp.post("/_emulator/reset")).raise_for_status()


def run_rows(run: dict[str, Any]) -> tuple[int, int]:
    """(processed + skipped, pages) over the run's modules."""
    modules = run["modules"].values()
    return sum(m["processed"] + m["skipped"] for m in modules), sum(m["pages"] for m in modules)


# --- phases --------------------------------------------------------------------------------------


async def unlimited_run(
    stack: Stack, pg: PostgresServer, sizes: Sizes, concurrency: int
) -> dict[str, Any]:
    warm_s = await warm_erp(stack)
    expected = await upstream_rows(stack)
    within = 120.0 + expected / 500.0
    meter = CpuMeter(stack_pids(stack, pg))
    run, wall, seen_wall = await start_and_wait(stack, within)
    cpu = meter.stop()
    rows, pages = run_rows(run)
    stored = await asyncio.to_thread(stored_rows, stack.database_url)
    events = await history_events(stack, run["id"])
    result = {
        "concurrency": concurrency,
        "page_size": sizes.page_size,
        "emulator_warm_s": warm_s,
        "rows": rows,
        "upstream_rows": expected,
        "stored_rows": stored,
        "counts_match": rows == expected == stored,
        "pages": pages,
        "wall_s": round(wall, 2),
        "wall_to_seen_done_s": round(seen_wall, 2),
        "rows_per_s": round(rows / wall, 1) if wall > 0 else None,
        "history_events": events,
        "history_events_per_page": round(events / pages, 2) if pages else None,
        "cpu_s": cpu,
        "cpu_ms_per_1000_rows": {k: round(v * 1e6 / rows, 1) for k, v in cpu.items()}
        if rows
        else {},
    }
    log(f"  concurrency {concurrency}: {rows} rows in {wall:.2f}s = {result['rows_per_s']} rows/s")
    return result


async def plain_run(
    stack: Stack, pg: PostgresServer, sizes: Sizes, concurrency: int
) -> dict[str, Any]:
    assert stack.erp_url is not None
    database_url = pg.create_database()
    expected = sizes.rows * len(all_modules())
    meter = CpuMeter(stack_pids(stack, pg))
    cpu: dict[str, float] = {}
    result = await plain_sync(
        erp_url=stack.erp_url,
        database_url=database_url,
        company=COMPANY,
        page_size=sizes.page_size,
        concurrency=concurrency,
        start_date=START_DATE,
        end_date=END_DATE,
        within=120.0 + expected / 500.0,
        on_done=lambda: cpu.update(meter.stop()),
    )
    stored = await asyncio.to_thread(stored_rows, database_url)
    rate = result.rows / result.wall_s if result.wall_s > 0 else None
    log(f"  plain, concurrency {concurrency}: {result.rows} rows in {result.wall_s:.2f}s")
    return {
        "concurrency": concurrency,
        "page_size": sizes.page_size,
        "rows": result.rows,
        "stored_rows": stored,
        "errors": result.errors,
        "pages": result.pages,
        "wall_s": round(result.wall_s, 2),
        "rows_per_s": rounded(rate),
        "cpu_s": cpu,
    }


async def rate_limited_run(stack: Stack, pg: PostgresServer, sizes: Sizes) -> dict[str, Any]:
    await warm_erp(stack)
    expected = await upstream_rows(stack)
    await reset_erp(stack)  # counters only: the `/count` calls above are not the run's
    pages_expected = len(all_modules()) * (sizes.rl_rows // sizes.rl_page_size + 1)
    within = 120.0 + pages_expected / 5.0
    meter = CpuMeter(stack_pids(stack, pg))
    run, wall, seen_wall = await start_and_wait(stack, within)
    cpu = meter.stop()
    stats = await erp_stats(stack)
    rows, pages = run_rows(run)
    requests = int(stats["requests"]["list"])
    served = sum(int(e["served"]) for e in stats["per_second"])
    rejected = sum(int(e["rejected"]) for e in stats["per_second"])
    seconds = sorted({int(e["second"]) for e in stats["per_second"] if e["served"]})
    active_s = (seconds[-1] - seconds[0] + 1) if seconds else 0
    max_per_s = int(stats["max_served_per_second"]["overall"])
    achieved = requests / wall if wall > 0 else 0.0
    result = {
        "limit_rps": RATE_LIMIT_RPS,
        "concurrency": sizes.rl_concurrency,
        "page_size": sizes.rl_page_size,
        "rows": rows,
        "upstream_rows": expected,
        "pages": pages,
        "requests": requests,
        "served": served,
        "rejected_429": rejected,
        "wall_s": round(wall, 2),
        "wall_to_seen_done_s": round(seen_wall, 2),
        "achieved_rps": round(achieved, 2),
        "active_rps": round(served / active_s, 2) if active_s else None,
        "max_served_per_second": max_per_s,
        "served_per_second": [int(e["served"]) for e in stats["per_second"]],
        "within_10pct": RATE_LIMIT_RPS * 0.9 <= achieved <= RATE_LIMIT_RPS,
        "never_above": max_per_s <= RATE_LIMIT_RPS,
        "history_events": await history_events(stack, run["id"]),
        "cpu_s": cpu,
    }
    log(f"  rate limited: {requests} requests in {wall:.2f}s = {achieved:.2f}/s, max {max_per_s}")
    return result


def targets(out: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    unlimited = out.get("unlimited") or {}
    if unlimited.get("best_rows_per_s") is not None:
        best = unlimited["best_rows_per_s"]
        result["rows_per_s"] = {"value": best, "target": ">= 20000", "met": best >= 20000}
    rate = out.get("rate_limited") or {}
    if rate.get("achieved_rps") is not None:
        result["rate_limited_within_10pct"] = {
            "value": rate["achieved_rps"],
            "target": f"{RATE_LIMIT_RPS * 0.9:g}..{RATE_LIMIT_RPS:g} req/s",
            "met": rate["within_10pct"],
        }
        result["rate_limited_never_above"] = {
            "value": rate["max_served_per_second"],
            "target": f"<= {RATE_LIMIT_RPS:g} per second",
            "met": rate["never_above"],
        }
    plain = out.get("plain") or {}
    if plain.get("overhead_pct") is not None:
        result["overhead_pct"] = {
            "value": plain["overhead_pct"],
            "target": "< 25",
            "met": plain["overhead_pct"] < 25,
        }
    return result


async def run(sizes: Sizes, quick: bool, keep: bool) -> dict[str, Any]:
    started = time.monotonic()
    out: dict[str, Any] = {
        "machine": machine(),
        "config": {
            "quick": quick,
            "database": "postgresql (private PostgresServer, fsync off)",
            "company": COMPANY,
            "period": [START_DATE, END_DATE],
            "modules": list(all_modules()),
            "rows_per_view": sizes.rows,
            "page_size": sizes.page_size,
            "pages_per_activity": sizes.pages_per_activity,
            "concurrencies": sizes.concurrencies,
            "rate_limited": {
                "rows_per_view": sizes.rl_rows,
                "page_size": sizes.rl_page_size,
                "concurrency": sizes.rl_concurrency,
                "min_interval_s": 1 / RATE_LIMIT_RPS,
            },
        },
    }
    tmp = Path(tempfile.mkdtemp(prefix="autosync-bench-sync-"))
    pg = PostgresServer(log_dir=tmp / "pg-logs")
    stack: Stack | None = None
    try:
        log("starting PostgreSQL")
        pg.start()
        first = phase_env(rows=sizes.rows, page_size=sizes.page_size,
                          concurrency=sizes.concurrencies[0], interval=0.0,
                          pages_per_activity=sizes.pages_per_activity)  # fmt: skip
        stack = Stack(
            StackConfig.ephemeral(
                tmp / "stack",
                database_url=pg.create_database(),
                api_keys=f"{ADMIN_KEY}=root:admin",
                env=first,
                log_dir=tmp / "stack" / "logs" / f"unlimited-c{sizes.concurrencies[0]}",
            )
        )
        log("starting the stack")
        stack.start()

        runs: list[dict[str, Any]] = []
        plains: list[dict[str, Any]] = []
        for i, concurrency in enumerate(sizes.concurrencies):
            if i:
                env = phase_env(rows=sizes.rows, page_size=sizes.page_size,
                                concurrency=concurrency, interval=0.0,
                                pages_per_activity=sizes.pages_per_activity)  # fmt: skip
                reconfigure(stack, f"unlimited-c{concurrency}", env, pg.create_database())
            log(f"unlimited, concurrency {concurrency}, {sizes.rows} rows per view")
            runs.append(await unlimited_run(stack, pg, sizes, concurrency))
            plains.append(await plain_run(stack, pg, sizes, concurrency))
        best = max(runs, key=lambda r: r["rows_per_s"] or 0.0)
        out["unlimited"] = {
            "runs": runs,
            "best_rows_per_s": best["rows_per_s"],
            "best_settings": {"concurrency": best["concurrency"], "page_size": best["page_size"]},
        }
        same = next(p for p in plains if p["concurrency"] == best["concurrency"])
        by_concurrency = {}
        for r, p in zip(runs, plains, strict=True):
            if r["rows_per_s"] and p["rows_per_s"]:
                by_concurrency[str(r["concurrency"])] = round(
                    (p["rows_per_s"] / r["rows_per_s"] - 1) * 100, 1
                )
        out["plain"] = {
            "rows_per_s": same["rows_per_s"],
            "concurrency": same["concurrency"],
            "overhead_pct": by_concurrency.get(str(best["concurrency"])),
            "overhead_pct_by_concurrency": by_concurrency,
            "runs": plains,
        }

        env = phase_env(rows=sizes.rl_rows, page_size=sizes.rl_page_size,
                        concurrency=sizes.rl_concurrency, interval=1 / RATE_LIMIT_RPS,
                        pages_per_activity=sizes.pages_per_activity)  # fmt: skip
        reconfigure(stack, "rate-limited", env, pg.create_database())
        log(f"rate limited, {sizes.rl_rows} rows per view, pages of {sizes.rl_page_size}")
        out["rate_limited"] = await rate_limited_run(stack, pg, sizes)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
        if stack is not None:
            dump_logs(stack)
    finally:
        if stack is not None:
            stack.stop()
        pg.stop()
        if keep:
            log(f"kept {tmp} (logs in stack/logs/<phase>/, pg-logs/)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out["targets"] = targets(out)
    out["duration_s"] = round(time.monotonic() - started, 1)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--rows", type=int, help="rows per view, unlimited runs (50000)")
    parser.add_argument("--page-size", type=int, help="page size, unlimited runs (1000)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", help="SYNC_CONCURRENCY values to try (1 2 3)"
    )
    parser.add_argument("--rl-rows", type=int, help="rows per view, rate-limited run (8000)")
    parser.add_argument("--rl-page-size", type=int, help="page size, rate-limited run (200)")
    parser.add_argument("--rl-concurrency", type=int, help="SYNC_CONCURRENCY, rate-limited run (6)")
    parser.add_argument(
        "--pages-per-activity", type=int, help="SYNC_PAGES_PER_ACTIVITY, every run (10)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    return parser.parse_args()


def sizes_from(args: argparse.Namespace) -> Sizes:
    sizes = Sizes.quick() if args.quick else Sizes()
    for name in ("rows", "page_size", "rl_rows", "rl_page_size", "rl_concurrency",
                 "pages_per_activity"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            setattr(sizes, name, value)
    if args.concurrency:
        sizes.concurrencies = list(args.concurrency)
    return sizes


def main() -> int:
    args = parse_args()
    out = asyncio.run(run(sizes_from(args), args.quick, args.keep))
    print(json.dumps(out, indent=2))
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
