"""Open event streams don't keep the API from exiting on SIGTERM.

The API runs under uvicorn in its own process, as deployed. uvicorn waits for every open HTTP
response before it shuts down, and an event stream never ends by itself: unless the app ends
its streams when the signal comes, one SSE client keeps the process alive forever.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
import websockets.exceptions
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.event_hub import EventHub, TopicFilter
from api.exit_signal import on_exit_signal
from core.migrate import upgrade
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT

KEY = "shutdown-test-key"
# How long the test waits for the process to exit: a bound that says "it hangs", not a speed.
EXIT_BOUND_SECONDS = 60.0
HANG_BOUND_SECONDS = 20.0


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ManagedProcess, str]]:
    database_url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(database_url)
    port = free_port()
    proc = ManagedProcess(
        "api",
        [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
        log_dir=tmp_path,
        env={
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "SECRET_KEY": "shutdown-test-secret-0123456789",
            "BOOTSTRAP_API_KEYS": f"{KEY}=alice",
            "STORAGE_DIR": str(tmp_path / "storage"),
            # Never dialled: the client is lazy and these routes don't need Temporal.
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        },
        cwd=tmp_path,  # no developer's .env
    )  # fmt: skip
    proc.start()
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/v1/health")
        yield proc, f"127.0.0.1:{port}"
    finally:
        proc.stop()


async def test_sigterm_ends_open_sse_and_websocket_streams_and_the_process_exits(
    api: tuple[ManagedProcess, str],
) -> None:
    proc, address = api
    headers = {"Authorization": f"Bearer {KEY}"}
    sse_lines: list[str] = []
    sse_open = asyncio.Event()

    async def read_sse() -> None:
        async with (
            httpx.AsyncClient(timeout=None) as client,
            client.stream("GET", f"http://{address}/v1/events", headers=headers) as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                sse_lines.append(line)
                sse_open.set()
        # Leaving the loop without an exception: the server ended the body properly.

    sse = asyncio.create_task(read_sse())
    async with websockets.connect(
        f"ws://{address}/v1/ws", additional_headers=headers, open_timeout=EXIT_BOUND_SECONDS
    ) as ws:
        await asyncio.wait_for(sse_open.wait(), EXIT_BOUND_SECONDS)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)

        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), EXIT_BOUND_SECONDS)
        # 1001 (going away) is the app's own close; uvicorn's fallback for a socket still
        # open when it shuts down its connections is 1012 (service restart).
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code in (1001, 1012), closed.value.rcvd
        await asyncio.wait_for(sse, EXIT_BOUND_SECONDS)

    try:
        await asyncio.to_thread(proc.proc.wait, EXIT_BOUND_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the API did not exit after SIGTERM:\n{proc.log_tail()}")
    assert any(line.startswith(": following user:alice") for line in sse_lines), sse_lines
    # The app ended the stream itself (not a cut connection), after what it had sent.
    assert [line for line in sse_lines if line][-1].startswith(": server going away"), sse_lines
    # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly.
    assert proc.proc.returncode in (0, -signal.SIGTERM), proc.log_tail()


async def test_closing_the_hub_ends_open_streams_and_refuses_new_ones(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    hub = EventHub(sessions, listen_dsn=None, poll_interval=0.05)
    await hub.start()
    try:
        stream = hub.stream(TopicFilter.of(["user:alice"]), None)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # from now (no backlog): one step and it waits on its queue
        assert hub.clients == 1
        hub.close()
        with pytest.raises(StopAsyncIteration):  # ended, not Dropped
            await asyncio.wait_for(waiting, 10)
        assert hub.clients == 0
        later = [e async for e in hub.stream(TopicFilter.of(["user:alice"]), 0)]
        assert later == []
    finally:
        await hub.stop()


async def stops_within_bound(hub: EventHub, why: str) -> None:
    """`hub.stop()` ends (a bound that says "it hangs", not a speed); else the test fails."""
    stopping = asyncio.create_task(hub.stop())
    done, _ = await asyncio.wait([stopping], timeout=HANG_BOUND_SECONDS)
    assert stopping in done, f"EventHub.stop() hung: {why}"
    await stopping


async def test_the_hub_stops_when_a_wake_and_the_stop_come_in_the_same_turn(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """CI hung 300 s in an app's teardown: the LISTEN connection's first wake and the stop's
    cancel landed in one loop turn, and Python 3.11's `asyncio.wait_for` returned the finished
    wait instead of raising the cancel, so the dispatch loop went on and `stop` waited forever."""
    hub = EventHub(sessions, listen_dsn=None, poll_interval=60.0)
    await hub.start()
    await asyncio.sleep(0.05)  # the dispatch loop is parked on its wake
    hub.wake()
    await stops_within_bound(hub, "the dispatch loop outlived its cancel")


class _CancelToErrorSession:
    """A session whose query turns its task's cancel into an error, as CI's lowest-versions
    SQLAlchemy/psycopg pair did mid-query in an app's teardown (the hub's loop caught it as a
    failed read, retried, and outlived `stop`)."""

    def __init__(self, querying: asyncio.Event) -> None:
        self._querying = querying

    async def __aenter__(self) -> _CancelToErrorSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def scalar(self, statement: object) -> int:
        return 0

    async def scalars(self, statement: object) -> list[object]:
        self._querying.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("canceling statement due to user request") from None
        return []


async def test_the_hub_stops_when_its_database_driver_turns_the_cancel_into_an_error() -> None:
    querying = asyncio.Event()
    hub = EventHub(
        lambda: _CancelToErrorSession(querying),  # type: ignore[arg-type]
        listen_dsn=None,
        poll_interval=60.0,
    )
    await hub.start()
    hub.wake()
    await asyncio.wait_for(querying.wait(), HANG_BOUND_SECONDS)
    await stops_within_bound(hub, "a swallowed cancel kept the loop running")


async def test_an_exit_signal_runs_the_callback_then_the_previous_handler() -> None:
    seen: list[str] = []
    called = asyncio.Event()

    def previous(signum: int, frame: object) -> None:
        seen.append(f"previous {signal.Signals(signum).name}")

    def callback() -> None:
        seen.append("callback")
        called.set()

    original = signal.signal(signal.SIGTERM, previous)
    try:
        with on_exit_signal(callback):
            signal.raise_signal(signal.SIGTERM)
            await asyncio.wait_for(called.wait(), 10)
        # The server's handler ran at once; the callback on the loop, right after.
        assert seen == ["previous SIGTERM", "callback"]
        assert signal.getsignal(signal.SIGTERM) is previous  # put back on the way out
    finally:
        signal.signal(signal.SIGTERM, original)
