"""Live event delivery on PostgreSQL: commit → WebSocket receipt; prints one JSON object.

    .venv/bin/python bench/events.py [--subscribers 200] [--rate 50] [--seconds 20] [--quick]

Self-contained, on loopback in a temp dir and on free ports: a private PostgreSQL
(`devstack.postgres`, fsync off), the API under uvicorn as its own process, `--subscribers`
WebSocket clients in a second process, and a writer in this one that commits events the way
activities do (`core.events.append_event` in a transaction, then commit) at `--rate` events
per second. The writer notes the wall-clock time right after each commit returns; the clients
note when each event arrives; latency = arrival - commit (one machine, one clock). No figure is
checked against a threshold except in `targets`, which only reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import json
import multiprocessing
import secrets
import shutil
import tempfile
import time
import traceback
from typing import Any

import httpx
import websockets

from bench.common import UNTHROTTLED_ENV, log, summary_ms
from bench.procs import CpuMeter, machine
from core.db import make_engine, make_sessionmaker
from core.events import append_event
from core.migrate import upgrade
from devstack.postgres import PostgresServer
from devstack.processes import ManagedProcess, free_port

KEY = "bench-key"
USER = "bench"
TOPIC = f"user:{USER}"
TARGET_P99_MS = 250.0
ROOT = Path(__file__).resolve().parent.parent


def clients_main(url: str, subscribers: int, expected: int, out: Any, ready: Any) -> None:
    """Child process: `subscribers` WebSockets; sends back {event id: [arrival times]}."""

    async def run() -> dict[int, list[float]]:
        arrivals: dict[int, list[float]] = {}
        connected = 0

        async def one() -> None:
            nonlocal connected
            async with websockets.connect(url, max_queue=None) as ws:
                connected += 1
                if connected == subscribers:
                    ready.set()
                seen = 0
                while seen < expected:
                    message = str(await ws.recv())
                    now = time.time()
                    # '{"id": 123, ...': the id without decoding the whole event
                    event_id = int(message[7 : message.index(",", 7)])
                    arrivals.setdefault(event_id, []).append(now)
                    seen += 1

        await asyncio.wait_for(
            asyncio.gather(*(one() for _ in range(subscribers))), timeout=120 + expected
        )
        return arrivals

    out.send(asyncio.run(run()))


async def write_events(database_url: str, count: int, rate: float) -> dict[int, float]:
    """Commit `count` events at `rate` per second; {event id: wall time after commit}."""
    engine = make_engine(database_url, pool_size=4)
    sessions = make_sessionmaker(engine)
    committed: dict[int, float] = {}
    started = time.monotonic()
    try:
        for n in range(count):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            async with sessions() as session, session.begin():
                event_id = await append_event(
                    session, TOPIC, "job.processing", {"id": f"job-{n}", "status": "processing",
                                                       "n": n, "padding": "x" * 400},
                )  # fmt: skip
            committed[event_id] = time.time()
    finally:
        await engine.dispose()
    return committed


async def run(subscribers: int, rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    out: dict[str, Any] = {
        "machine": machine(),
        "config": {"database": "postgresql (private PostgresServer, fsync off)",
                   "subscribers": subscribers, "rate_per_s": rate, "events": count,
                   "payload_bytes": "~500", "transport": "WebSocket /v1/ws"},
    }  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="autosync-bench-events-"))
    pg = PostgresServer(log_dir=tmp / "pg-logs")
    api: ManagedProcess | None = None
    child: multiprocessing.process.BaseProcess | None = None
    try:
        log("starting PostgreSQL")
        pg.start()
        database_url = pg.create_database()
        upgrade(database_url)
        port = free_port()
        env = {
            "DATABASE_URL": database_url,
            "BOOTSTRAP_API_KEYS": f"{KEY}={USER}",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # not needed: nothing listens
            "STORAGE_DIR": str(tmp / "storage"),
            "PYTHONUNBUFFERED": "1",
            **UNTHROTTLED_ENV,
        }
        api = ManagedProcess(
            "api",
            [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
             "--no-access-log"],
            log_dir=tmp / "logs", env=env, cwd=ROOT,
        )  # fmt: skip
        api.start().wait_http(f"http://127.0.0.1:{port}/v1/health", timeout=60)
        # The clients connect as a browser does: with a stream token, never the key in a URL.
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(
                f"http://127.0.0.1:{port}/v1/stream-tokens",
                headers={"Authorization": f"Bearer {KEY}"},
            )
        answer.raise_for_status()
        url = f"ws://127.0.0.1:{port}/v1/ws?topic={TOPIC}&token={answer.json()['token']}"
        context = multiprocessing.get_context("spawn")
        receive, send = context.Pipe(duplex=False)
        ready = context.Event()
        child = context.Process(
            target=clients_main, args=(url, subscribers, count, send, ready), daemon=True
        )
        child.start()
        log(f"connecting {subscribers} WebSocket subscribers")
        if not await asyncio.to_thread(ready.wait, 60):
            raise RuntimeError("subscribers did not all connect within 60 s")
        await asyncio.sleep(1.0)  # let the last subscriptions register at the hub
        meter = CpuMeter({"api": api.pid, "postgres": pg.pid or 0})
        log(f"writing {count} events at {rate:g}/s")
        committed = await write_events(database_url, count, rate)
        arrivals: dict[int, list[float]] = await asyncio.to_thread(receive.recv)
        cpu = meter.stop()
        latencies = [
            arrived - committed[event_id]
            for event_id, times in arrivals.items()
            for arrived in times
            if event_id in committed
        ]
        delivered = sum(len(times) for times in arrivals.values())
        out["results"] = {
            "commit_to_receipt_ms": summary_ms(latencies),
            "deliveries": delivered,
            "expected_deliveries": count * subscribers,
            "every_subscriber_got_every_event": delivered == count * subscribers
            and all(len(times) == subscribers for times in arrivals.values()),
            "cpu_s": cpu,
        }
        p99 = out["results"]["commit_to_receipt_ms"]["p99"]
        out["targets"] = {
            "p99_ms": {"value": p99, "target": f"< {TARGET_P99_MS:g}",
                       "met": p99 is not None and p99 < TARGET_P99_MS},
        }  # fmt: skip
        log(f"p50 {out['results']['commit_to_receipt_ms']['p50']} ms, p99 {p99} ms")
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
        if api is not None:
            log(api.log_tail())
    finally:
        if child is not None and child.is_alive():
            child.terminate()
            child.join(10)
        if api is not None:
            api.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to write")
    parser.add_argument("--quick", action="store_true", help="20 subscribers for 3 s")
    args = parser.parse_args()
    if args.quick:
        args.subscribers, args.seconds = 20, 3.0
    out = asyncio.run(run(args.subscribers, args.rate, args.seconds))
    print(json.dumps(out, indent=2))
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
