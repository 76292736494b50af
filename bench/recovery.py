"""Outputs stored before their URLs expire, and copy throughput to S3; prints one JSON object.

    .venv/bin/python bench/recovery.py [--jobs 1000] [--scale 0.1] [--quick]

Self-contained, on loopback in a temp dir and on free ports: the stack as `devstack` starts it
(Temporal dev server, Replicate emulator, API, worker; SQLite app DB) storing to S3 on a moto
server. Progress goes to stderr, the JSON to stdout. No figure is checked against a threshold
except in `targets`, which only reports.

- `expiry`: `--jobs` generation jobs whose output URLs expire 10 minutes after the provider
  completes them, time-scaled by `--scale` in the emulator (0.1: 60 s), with every webhook of
  a random 20 % of them dropped, so those are found by the poll fallback (the worker's default
  poll interval, not scaled). Submitted at `--rate`/s. `stored_before_expiry`: jobs that
  ended `succeeded` with their outputs in S3 (a copy started after expiry fails the job) over
  all jobs; `copy_lag_s`: per job, its DB `completed_at` minus the emulator's completion, split
  by webhook and poll fallback; `margin_s`: the expiry time minus the slowest copy.
- `throughput`: per file size (`--sizes`, MB), `--copies` jobs at once whose single output has
  that size, each downloaded from the emulator and uploaded to S3 by a freshly started worker.
  `mb_per_s`: bytes stored over the wall time from the first provider completion to the last
  `succeeded`; `worker_rss_mb_peak`: the worker's peak RSS (with children) meanwhile, sampled
  every 0.2 s, and `worker_rss_growth_mb` its rise over the worker's RSS before the phase.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
import traceback
from typing import Any

from bench.app_client import AppClient, terminal_time
from bench.common import UNTHROTTLED_ENV, bounded, log, paced, rounded, summary_ms
from bench.procs import PeakRss, machine, rss_mb
from devstack.s3 import S3Server
from devstack.stack import Stack, StackConfig

KEY = "bench-key"
BUCKET = "autosync-bench"
EXPIRY_SECONDS = 600.0


async def expiry_phase(
    app: AppClient, jobs: int, scale: float, rate: float, seed: int
) -> dict[str, Any]:
    ttl = EXPIRY_SECONDS * scale
    rng = random.Random(seed)
    dropped = set(rng.sample(range(jobs), k=jobs // 5))
    project = "expiry"

    async def submit(i: int) -> str | None:
        faults: dict[str, Any] = {"file_ttl_seconds": ttl, "processing_seconds": 0.3}
        if i in dropped:
            faults["drop_webhooks"] = True
        return await app.submit(project, i, faults)

    log(f"expiry: {jobs} jobs at {rate:g}/s, URLs live {ttl:g} s, webhooks dropped for "
        f"{len(dropped)}")  # fmt: skip
    ids = await paced(jobs, rate, submit)
    accepted = sum(1 for i in ids if i)
    await app.wait_for(project, accepted, ("succeeded",), within=120 + jobs / rate + 2 * ttl)
    rows = await app.rows(project)
    by_id = {row.id: row for row in rows}
    stored = [row for row in rows if row.status == "succeeded"]
    lags: dict[str, list[float]] = {"webhook": [], "poll": []}
    for row in stored:
        if row.provider_job_id is None or row.completed_at is None:
            continue
        done = terminal_time(await app.prediction_timeline(row.provider_job_id))
        if done is not None:
            lags["webhook" if row.webhook_count else "poll"].append(row.completed_at - done)
    slowest = max((lag for group in lags.values() for lag in group), default=None)
    statuses: dict[str, int] = {}
    for row in by_id.values():
        statuses[row.status] = statuses.get(row.status, 0) + 1
    share = len(stored) / jobs if jobs else None
    return {
        "jobs": jobs,
        "accepted": accepted,
        "webhooks_dropped_for": len(dropped),
        "url_lifetime_s": ttl,
        "statuses": statuses,
        "stored_before_expiry": rounded(share, 4),
        "copy_lag_s": {
            name: {
                k: (rounded(v / 1000, 2) if isinstance(v, float) else v)
                for k, v in summary_ms(g).items()
            }
            for name, g in lags.items()
        },
        "margin_s": rounded(ttl - slowest, 1) if slowest is not None else None,
        "submit_errors": app.submit_errors[:3],
    }


async def throughput_phase(
    app: AppClient, stack: Stack, size_mb: int, copies: int
) -> dict[str, Any]:
    project = f"copy-{size_mb}mb"
    size = size_mb * 1024 * 1024
    # A fresh worker per size: the same baseline, whatever earlier phases left in memory.
    await asyncio.to_thread(restart_worker, stack)
    assert stack.worker is not None
    log(f"throughput: {copies} jobs with a {size_mb} MB output each")
    before = rss_mb(stack.worker.pid)
    async with PeakRss(stack.worker.pid, interval=0.2) as peak:
        ids = await bounded(
            copies, copies,
            lambda i: app.submit(project, i, {"file_bytes": size, "processing_seconds": 0.2}),
        )  # fmt: skip
        accepted = sum(1 for i in ids if i)
        await app.wait_for(project, accepted, ("succeeded",), within=300 + copies * size_mb)
    rows = [row for row in await app.rows(project) if row.status == "succeeded"]
    completions = [
        terminal_time(await app.prediction_timeline(row.provider_job_id))
        for row in rows
        if row.provider_job_id
    ]
    starts = [t for t in completions if t is not None]
    ends = [row.completed_at for row in rows if row.completed_at is not None]
    wall = (max(ends) - min(starts)) if starts and ends else None
    stored_mb = len(rows) * size_mb
    return {
        "file_mb": size_mb,
        "jobs": copies,
        "succeeded": len(rows),
        "stored_mb": stored_mb,
        "wall_s": rounded(wall, 2),
        "mb_per_s": rounded(stored_mb / wall, 1) if wall else None,
        "worker_rss_mb_before": rounded(before),
        "worker_rss_mb_peak": rounded(peak.peak_mb),
        "worker_rss_growth_mb": rounded(peak.peak_mb - before)
        if peak.peak_mb is not None and before is not None
        else None,
    }


def restart_worker(stack: Stack) -> None:
    if stack.worker is not None:
        stack.worker.stop()
    stack.start_worker()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": machine(),
        "config": {"storage": "s3 (moto server on loopback)", "database": "sqlite",
                   "jobs": args.jobs, "scale": args.scale, "rate_per_s": args.rate,
                   "sizes_mb": args.sizes, "copies": args.copies},
    }  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="autosync-bench-recovery-"))
    s3 = S3Server()
    stack: Stack | None = None
    app: AppClient | None = None
    started = time.monotonic()
    try:
        s3.start()
        s3.create_bucket(BUCKET)
        stack = Stack(
            StackConfig.ephemeral(
                tmp / "stack", api_keys=f"{KEY}=bench", storage_backend="s3",
                s3_endpoint_url=s3.endpoint_url, s3_bucket=BUCKET, log_dir=tmp / "logs",
                env=dict(UNTHROTTLED_ENV),
            )
        )  # fmt: skip
        log("starting the stack")
        stack.start()
        app = AppClient(stack, KEY)
        out["expiry"] = await expiry_phase(app, args.jobs, args.scale, args.rate, args.seed)
        out["throughput"] = [
            await throughput_phase(app, stack, size, args.copies) for size in args.sizes
        ]
        share = out["expiry"]["stored_before_expiry"]
        peaks = [t["worker_rss_mb_peak"] for t in out["throughput"] if t["worker_rss_mb_peak"]]
        out["targets"] = {
            "stored_before_expiry": {"value": share, "target": "1.0 (100 %)", "met": share == 1},
            "rss_independent_of_file_size": {
                "value": {f"{t['file_mb']} MB": t["worker_rss_mb_peak"] for t in out["throughput"]},
                "target": "peak worker RSS about the same for every file size (within 30 MB)",
                "met": bool(peaks) and max(peaks) - min(peaks) <= 30,
            },
        }  # fmt: skip
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
    finally:
        if app is not None:
            await app.aclose()
        if stack is not None:
            stack.stop()
        s3.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out["duration_s"] = round(time.monotonic() - started, 1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=0.1, help="time scale of the expiry")
    parser.add_argument("--rate", type=float, default=10.0, help="job submissions per second")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100], help="MB")
    parser.add_argument("--copies", type=int, default=10, help="jobs per file size")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="60 jobs, 3 copies of 2 and 20 MB")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.sizes, args.copies = 60, [2, 20], 3
    out = asyncio.run(run(args))
    print(json.dumps(out, indent=2))
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
