"""Pull-sync at scale (seed 004): N client identities with R pending records each; prints JSON.

    .venv/bin/python bench/pull_sync.py [--clients 1000] [--records 50] [--cycles 4]
                                        [--interval 30] [--pull-workers 0] [--postgres]

Self-contained: the stack as `devstack` starts it (Temporal dev server, API, worker) on free
ports in a temp dir, with one pull-client emulator process serving every identity under
`/c/{id}` and no provider or ERP emulator. Progress on stderr, the JSON on stdout; no figure is
checked against a threshold except in `targets`, which only reports.

- `sync_all`: the N clients registered over REST, then `POST /v1/pull-sync/sync-all` with R
  records pending on each: `wall_s` (request to answer), records stored, records/s.
- `--pull-workers N`: N more worker processes beside the stack's own, polling only the
  `pull-sync` queue (`WORKER_QUEUES=pull-sync`, as README's "Scale workers" runs them), so a
  cycle's batches spread over N + 1 processes: one Python process pulls on one core.
- `scheduled`: the `pull-sync-cycle` schedule at `--interval` seconds, R new records put on
  every client before each cycle is due; per cycle (from `pull_cycles`): `lag_s` = when it
  finished minus when the schedule said it was due (p50/p99), `duration_s`, records stored,
  records/s; and CPU seconds per cycle of the workers, the API, the Temporal server and the
  client emulator (`clients`: the 1,000 clients' own work, on this machine only because the
  bench is self-contained) — the process trees, over the whole scheduled phase divided by its
  cycles; `other` is the rest of the machine, which skews every figure.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from typing import Any

import httpx
from sqlalchemy import create_engine, select

from bench.common import UNTHROTTLED_ENV, bounded, log, percentile, rounded
from bench.procs import CpuMeter, machine
from core.db import sync_url
from core.pull_models import PullCycle
from devstack.postgres import PostgresServer
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT, WORKER_READY, Stack, StackConfig

ADMIN = "bench-admin"


def scheduled_cycles(database_url: str, since: float) -> list[PullCycle]:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(PullCycle).where(
                    PullCycle.mode == "all", PullCycle.scheduled_at.is_not(None)
                )
            ).all()
    finally:
        engine.dispose()
    cycles = [PullCycle(**row._mapping) for row in rows]
    return sorted(
        (c for c in cycles if c.finished_at.timestamp() >= since), key=lambda c: c.finished_at
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="autosync-bench-pull-"))
    postgres: PostgresServer | None = None
    kw: dict[str, Any] = {}
    if args.postgres:
        postgres = PostgresServer()
        postgres.start()
        kw["database_url"] = postgres.create_database()
    config = StackConfig.ephemeral(
        tmp,
        provider_ports={}, erp_port=None,
        worker_metrics_port=None, pull_client_port=free_port(),
        api_keys=f"{ADMIN}=root:admin",
        env={**UNTHROTTLED_ENV, "PULL_SYNC_INTERVAL_SECONDS": str(args.interval),
             "PULL_CLIENT_EMULATOR_SEED_RECORDS": "0"},
        **kw,
    )  # fmt: skip
    stack = Stack(config)
    result: dict[str, Any] = {"machine": machine(), "clients": args.clients,
                              "records_per_client": args.records, "interval_s": args.interval,
                              "worker_processes": 1 + args.pull_workers,
                              "database": "postgresql" if args.postgres else "sqlite"}  # fmt: skip
    pull_workers: list[ManagedProcess] = []
    try:
        log("starting the stack")
        stack.start()
        for n in range(args.pull_workers):
            worker = ManagedProcess(
                f"pull-worker-{n + 1}", [sys.executable, str(ROOT / "worker.py")],
                log_dir=stack.log_dir, env={**stack.app_env(), "WORKER_QUEUES": "pull-sync"},
                cwd=ROOT,
            ).start()  # fmt: skip
            pull_workers.append(worker)
            worker.wait_log(WORKER_READY)
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with (
            httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=600) as api,
            httpx.AsyncClient(base_url=stack.pull_client_url or "", timeout=120) as emulator,
        ):
            (await api.post("/v1/pull-sync/scheduler/stop")).raise_for_status()
            # The `default` identity make-up registers holds nothing: out of the way.
            for client in (await api.get("/v1/pull-sync/clients")).json()["clients"]:
                await api.delete(f"/v1/pull-sync/clients/{client['id']}")
            log(f"populating {args.clients} identities x {args.records} records")
            populate = {"clients": args.clients, "records": args.records}
            (await emulator.post("/_emulator/populate", json=populate)).raise_for_status()

            async def register(n: int) -> None:
                body = {"client_url": f"{stack.pull_client_url}/c/c{n}", "user_id": f"user-{n}"}
                (await api.post("/v1/pull-sync/clients", json=body)).raise_for_status()

            await bounded(args.clients, 20, register)
            log("sync-all")
            started = time.monotonic()
            answer = (await api.post("/v1/pull-sync/sync-all")).json()
            wall = time.monotonic() - started
            result["sync_all"] = {
                "wall_s": rounded(wall, 2), "ok": answer["ok"], "failed": answer["failed"],
                "records_stored": answer["stored"],
                "records_per_s": rounded(answer["stored"] / wall, 0),
            }  # fmt: skip
            log(f"sync-all: {result['sync_all']}")

            log(f"scheduled: {args.cycles} cycles at {args.interval}s")
            (await emulator.post("/_emulator/populate", json=populate)).raise_for_status()
            since = time.time()
            pids = {"worker": stack.worker.pid, "api": stack.api.pid,  # type: ignore[union-attr]
                    "temporal": stack.temporal.pid,  # type: ignore[union-attr]
                    "clients": stack.pull_client.pid}  # type: ignore[union-attr]  # fmt: skip
            pids.update({w.name: w.pid for w in pull_workers})
            meter = CpuMeter(pids)
            await api.post("/v1/pull-sync/scheduler/set-interval", json={"seconds": args.interval})
            (await api.post("/v1/pull-sync/scheduler/start")).raise_for_status()
            cycles: list[PullCycle] = []
            deadline = time.monotonic() + args.interval * (args.cycles + 2) + 120
            seen = 0
            while len(cycles) < args.cycles and time.monotonic() < deadline:
                await asyncio.sleep(1)
                cycles = scheduled_cycles(stack.database_url, since)
                if len(cycles) > seen:  # refill every client for the next cycle
                    seen = len(cycles)
                    log(
                        f"cycle {seen}: stored {cycles[-1].stored}, lag {cycles[-1].lag_seconds:.2f}s"
                    )
                    if seen < args.cycles:
                        await emulator.post("/_emulator/populate", json=populate)
            cpu = meter.stop()
            await api.post("/v1/pull-sync/scheduler/stop")
            lags = [c.lag_seconds for c in cycles]
            durations = [(c.finished_at - c.started_at).total_seconds() for c in cycles]
            stored = [c.stored for c in cycles]
            result["scheduled"] = {
                "cycles": len(cycles),
                "lag_s": {"p50": rounded(percentile(lags, 50), 2),
                          "p99": rounded(percentile(lags, 99), 2),
                          "max": rounded(max(lags, default=0), 2)},
                "duration_s": {"p50": rounded(percentile(durations, 50), 2),
                               "max": rounded(max(durations, default=0), 2)},
                "records_stored_per_cycle": stored,
                "records_per_s": rounded(sum(stored) / sum(durations), 0) if durations else None,
                "cpu_s_per_cycle": {name: rounded(seconds / max(1, len(cycles)), 2)
                                    for name, seconds in cpu.items()},
            }  # fmt: skip
            p99 = result["scheduled"]["lag_s"]["p99"]
            result["targets"] = {"cycle_lag_p99_under_5s": p99 is not None and p99 < 5}
    finally:
        for worker in pull_workers:
            worker.stop(timeout=stack.worker_stop_timeout())
        stack.stop()
        if postgres is not None:
            postgres.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument(
        "--pull-workers", type=int, default=0,
        help="worker processes polling only the pull-sync queue, beside the stack's worker",
    )  # fmt: skip
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
