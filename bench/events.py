"""Live event delivery on PostgreSQL: commit → WebSocket/SSE receipt; prints one JSON object.

    .venv/bin/python bench/events.py [--subscribers 200] [--rate 50] [--seconds 20] [--quick]
    .venv/bin/python bench/events.py --scale     # 2,000 subscribers, 2 APIs, 200 events/s

Self-contained, on loopback in a temp dir and on free ports: a private PostgreSQL
(`devstack.postgres`, fsync off), `--apis` API processes under uvicorn on the same database,
`--subscribers` clients of one topic spread evenly over the APIs (a `--sse-share` of them on
`GET /v1/events` (SSE), the rest on `/v1/ws`) in `--client-procs` child processes, and a writer
in this one that commits events the way activities do (`core.events.append_event` in a
transaction, then commit) at `--rate` events per second. The writer notes the wall-clock time
right after each commit returns; the clients note when each event arrives; latency = arrival -
commit (one machine, one clock). Every subscriber must get every event, once.

The default run (200 WebSocket subscribers, one API, 50 events/s, target p99 < 250 ms) is the
one of the README's earlier figures; `--scale` is issue 11's: 2,000 subscribers, half of them
SSE, over 2 APIs at 200 events/s for 10 s, target p99 < 100 ms. No figure is checked against a
threshold except in `targets`, which only reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import secrets
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlsplit

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
ROOT = Path(__file__).resolve().parent.parent


def _event_id(message: str) -> int:
    """'{"id": 123, ...': the id without decoding the whole event."""
    return int(message[7 : message.index(",", 7)])


Seen = list[tuple[int, float]]


async def _ws_subscriber(
    url: str, expected: int, seen: Seen, connected: Callable[[], None]
) -> None:
    async with websockets.connect(url, max_queue=None) as ws:
        connected()
        while len(seen) < expected:
            message = str(await ws.recv())
            seen.append((_event_id(message), time.time()))


async def _sse_subscriber(
    url: str, expected: int, seen: Seen, connected: Callable[[], None]
) -> None:
    """A bare HTTP/1.1 reader of the stream: httpx's line iterator would cost the client more
    CPU than the server spends, on a machine both share. Each event is one chunk, so its
    `id:` line arrives whole between chunk-size lines."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"SSE answered {status!r}")
        # The stream's first chunk (`retry:` and a comment) comes once it follows the topic.
        while not (await reader.readline()).startswith(b": following"):
            pass
        connected()
        while len(seen) < expected:
            line = await reader.readline()
            if not line:
                raise RuntimeError("SSE stream closed early")
            if line.startswith(b"id: "):
                seen.append((int(line[4:]), time.time()))
    finally:
        writer.close()


def clients_main(subscribers: list[tuple[str, str]], expected: int, out: Any, ready: Any) -> None:
    """Child process: one client per (transport, url); sends back ({event id: [arrival
    times]}, how many subscribers got every event exactly once, errors)."""

    async def run() -> tuple[dict[int, list[float]], int, list[str]]:
        seen: list[Seen] = [[] for _ in subscribers]
        errors: list[str] = []
        connected = 0

        def one_more() -> None:
            nonlocal connected
            connected += 1
            if connected == len(subscribers):
                ready.set()

        async def one(index: int, transport: str, url: str) -> None:
            subscriber = _sse_subscriber if transport == "sse" else _ws_subscriber
            try:
                await subscriber(url, expected, seen[index], one_more)
            except Exception as exc:  # reported, not raised: the others go on
                errors.append(f"{transport}: {type(exc).__name__}: {exc}"[:200])

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(one(i, t, u) for i, (t, u) in enumerate(subscribers))),
                timeout=180 + expected,
            )
        arrivals: dict[int, list[float]] = {}
        complete = 0
        for events in seen:
            ids = [event_id for event_id, _ in events]
            complete += len(ids) == expected and len(set(ids)) == expected
            for event_id, at in events:
                arrivals.setdefault(event_id, []).append(at)
        return arrivals, complete, errors[:10]

    out.send(asyncio.run(run()))


def assign(subscribers: int, apis: int, sse_share: float) -> list[tuple[str, int]]:
    """(transport, API index) per subscriber: the APIs in turn, and within each API's own
    subscribers SSE spread evenly at `sse_share`, so every API serves both transports alike."""
    out: list[tuple[str, int]] = []
    for i in range(subscribers):
        nth = i // apis  # this subscriber's place among its API's
        sse = math.floor((nth + 1) * sse_share) > math.floor(nth * sse_share)
        out.append(("sse" if sse else "ws", i % apis))
    return out


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


@dataclass(frozen=True)
class Shape:
    subscribers: int = 200
    apis: int = 1
    rate: float = 50.0
    seconds: float = 20.0
    sse_share: float = 0.0
    client_procs: int = 1
    target_p99_ms: float = 250.0

    @classmethod
    def scale(cls) -> Shape:
        """Issue 11's: 2,000 subscribers, half SSE, over two APIs at 200 events/s."""
        return cls(subscribers=2000, apis=2, rate=200.0, seconds=10.0, sse_share=0.5,
                   client_procs=4, target_p99_ms=100.0)  # fmt: skip


def start_api(index: int, env: dict[str, str], log_dir: Path) -> tuple[ManagedProcess, int]:
    port = free_port()
    api = ManagedProcess(
        f"api-{index + 1}",
        [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        log_dir=log_dir, env=env, cwd=ROOT,
    )  # fmt: skip
    api.start().wait_http(f"http://127.0.0.1:{port}/v1/health", timeout=60)
    return api, port


async def run(shape: Shape) -> dict[str, Any]:
    count = int(shape.rate * shape.seconds)
    subscribers = shape.subscribers
    plan = assign(subscribers, shape.apis, shape.sse_share)
    out: dict[str, Any] = {
        "machine": machine(),
        "config": {"database": "postgresql (private PostgresServer, fsync off)",
                   **asdict(shape), "events": count, "payload_bytes": "~500",
                   "transports": {"ws (/v1/ws)": sum(t == "ws" for t, _ in plan),
                                  "sse (/v1/events)": sum(t == "sse" for t, _ in plan)},
                   "subscribers_per_api": [sum(a == i for _, a in plan)
                                           for i in range(shape.apis)]},
    }  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="autosync-bench-events-"))
    pg = PostgresServer(log_dir=tmp / "pg-logs")
    apis: list[ManagedProcess] = []
    children: list[multiprocessing.process.BaseProcess] = []
    try:
        log("starting PostgreSQL")
        pg.start()
        database_url = pg.create_database()
        upgrade(database_url)
        env = {
            "DATABASE_URL": database_url,
            "BOOTSTRAP_API_KEYS": f"{KEY}={USER}",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # not needed: nothing listens
            "STORAGE_DIR": str(tmp / "storage"),
            "PYTHONUNBUFFERED": "1",
            **UNTHROTTLED_ENV,
        }
        ports: list[int] = []
        for index in range(shape.apis):
            api, port = start_api(index, env, tmp / "logs")
            apis.append(api)
            ports.append(port)
        # The clients connect as a browser does: with a stream token, never the key in a URL.
        # The APIs share SECRET_KEY, so one token opens a stream on any of them.
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(
                f"http://127.0.0.1:{ports[0]}/v1/stream-tokens",
                headers={"Authorization": f"Bearer {KEY}"},
            )
        answer.raise_for_status()
        query = f"topic={TOPIC}&token={answer.json()['token']}"
        urls = {
            "ws": [f"ws://127.0.0.1:{p}/v1/ws?{query}" for p in ports],
            "sse": [f"http://127.0.0.1:{p}/v1/events?{query}" for p in ports],
        }
        targets = [(transport, urls[transport][api]) for transport, api in plan]
        context = multiprocessing.get_context("spawn")
        pipes = []
        readies = []
        procs = max(1, min(shape.client_procs, subscribers))
        for n in range(procs):
            receive, send = context.Pipe(duplex=False)
            ready = context.Event()
            child = context.Process(
                target=clients_main, args=(targets[n::procs], count, send, ready), daemon=True
            )
            child.start()
            children.append(child)
            pipes.append(receive)
            readies.append(ready)
        log(f"connecting {subscribers} subscribers in {procs} process(es) to {shape.apis} API(s)")
        for ready in readies:
            if not await asyncio.to_thread(ready.wait, 120):
                raise RuntimeError("subscribers did not all connect within 120 s")
        await asyncio.sleep(1.0)  # let the last subscriptions register at the hubs
        pids = {api.name: api.pid for api in apis} | {"postgres": pg.pid or 0}
        pids |= {f"clients-{n + 1}": c.pid or 0 for n, c in enumerate(children)}
        meter = CpuMeter(pids)
        log(f"writing {count} events at {shape.rate:g}/s")
        committed = await write_events(database_url, count, shape.rate)
        log("waiting for every delivery")
        arrivals: dict[int, list[float]] = {}
        complete = 0
        errors: list[str] = []
        for receive in pipes:
            part, done, errs = await asyncio.to_thread(receive.recv)
            for event_id, times in part.items():
                arrivals.setdefault(event_id, []).extend(times)
            complete += done
            errors += errs
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
            "subscribers_with_every_event_once": complete,
            "every_subscriber_got_every_event": complete == subscribers
            and delivered == count * subscribers,
            "client_errors": errors[:10],
            "cpu_s": cpu,
        }
        p99 = out["results"]["commit_to_receipt_ms"]["p99"]
        target = shape.target_p99_ms
        out["targets"] = {
            "p99_ms": {"value": p99, "target": f"< {target:g}",
                       "met": p99 is not None and p99 < target},
        }  # fmt: skip
        log(f"p50 {out['results']['commit_to_receipt_ms']['p50']} ms, p99 {p99} ms")
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
        for api in apis:
            log(api.log_tail())
    finally:
        for process in children:
            if process.is_alive():
                process.terminate()
                process.join(10)
        for api in apis:
            api.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument(
        "--scale",
        action="store_true",
        help="2,000 subscribers (half SSE), 2 APIs, 200 events/s for 10 s",
    )
    parser.add_argument("--subscribers", type=int, help="200 (--scale: 2000)")
    parser.add_argument("--apis", type=int, help="API processes, subscribers spread evenly (1)")
    parser.add_argument("--rate", type=float, help="events per second (50; --scale: 200)")
    parser.add_argument("--seconds", type=float, help="how long to write (20; --scale: 10)")
    parser.add_argument("--sse-share", type=float, help="share of SSE subscribers (0; 0.5)")
    parser.add_argument("--client-procs", type=int, help="client processes (1; --scale: 4)")
    parser.add_argument("--quick", action="store_true", help="20 subscribers for 3 s")
    args = parser.parse_args()  # fmt: skip
    shape = Shape.scale() if args.scale else Shape()
    if args.quick:
        shape = replace(shape, subscribers=20, seconds=3.0, client_procs=1)
    given = {name: getattr(args, name) for name in ("subscribers", "apis", "rate", "seconds",
             "sse_share", "client_procs") if getattr(args, name) is not None}  # fmt: skip
    out = asyncio.run(run(replace(shape, **given)))
    print(json.dumps(out, indent=2))
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
