"""bench/front.py, the load balancer of the scale-out bench: it passes bytes both ways, and a
connection still open when it stops ends with it instead of erroring once its loop is closed."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bench.front import TcpFront
from devstack.processes import free_port

BOUND_SECONDS = 10.0


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A plain echo server on a thread: the API process behind the front."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(BOUND_SECONDS)
    port = server.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.close()


def test_a_connection_still_open_at_stop_ends_cleanly(
    echo_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    raised: list[str] = []

    def record(unraisable: Any) -> None:
        raised.append(f"{unraisable.exc_type.__name__}: {unraisable.exc_value}")

    monkeypatch.setattr(sys, "unraisablehook", record)
    front = TcpFront(free_port(), [echo_port]).start()
    with socket.create_connection(("127.0.0.1", front.port), timeout=BOUND_SECONDS) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        front.stop()  # the client keeps its connection open meanwhile
        assert client.recv(4) == b""  # the front closed its end
    assert front.connections == 1
    assert raised == []
