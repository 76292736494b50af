"""The TCP proxy that plays outages for the e2e tests and the soak bench.

An outage must end the connections that are open, at once, as a stopped server's end: a proxy
that only closed its own file descriptors left every peer waiting on a connection that looked
open (its pump threads, blocked in `recv`, kept the sockets alive), so a database "outage"
became a black hole that exhausted the app's connection pool.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from devstack.tcp_proxy import TcpProxy


class EchoServer:
    """Accepts connections and echoes what it gets; keeps its side of each connection."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def server() -> Iterator[EchoServer]:
    echo = EchoServer()
    yield echo
    echo.close()


@pytest.fixture
def proxy(server: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy(server.url) as running:
        yield running


def connect(proxy: TcpProxy) -> socket.socket:
    port = urlsplit(proxy.url).port
    assert port is not None
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def ended(sock: socket.socket) -> bool:
    """Whether the peer ended the connection (EOF or reset), rather than keeping it open."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_forwards_both_ways(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"hello")
        assert sock.recv(5) == b"hello"


def test_down_ends_open_connections_at_once(proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"  # the connection is up and idle, pumps waiting
        proxy.down()
        assert ended(sock), "the client's connection stayed open through the outage"


def test_down_ends_the_upstream_side_too(server: EchoServer, proxy: TcpProxy) -> None:
    with connect(proxy) as sock:
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        upstream = server.accepted[-1]
        upstream.settimeout(5)
        proxy.down()
        assert ended(upstream), "the server's side stayed open through the outage"


def test_refuses_while_down_and_forwards_again_after_up(proxy: TcpProxy) -> None:
    proxy.down()
    try:
        with connect(proxy) as refused:
            assert ended(refused)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the reset came while the connect was still returning: refused all the same
    assert proxy.refused >= 1
    proxy.up()
    with connect(proxy) as sock:
        sock.sendall(b"back")
        assert sock.recv(4) == b"back"


def test_slow_holds_each_chunk(proxy: TcpProxy) -> None:
    proxy.slow(0.3)
    with connect(proxy) as sock:
        started = time.monotonic()
        sock.sendall(b"slow")
        assert sock.recv(4) == b"slow"
        # Held on the way there and on the way back.
        assert time.monotonic() - started >= 0.6
    proxy.slow(0)
    with connect(proxy) as sock:
        sock.sendall(b"fast")
        assert sock.recv(4) == b"fast"
