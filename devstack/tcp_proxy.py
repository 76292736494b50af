"""A TCP proxy on loopback that can play a network outage: `down()` resets every connection
and refuses new ones until `up()`; `slow(seconds)` delays every chunk it forwards.

It stands between the stack and a server whose state must survive the outage (moto's S3, whose
objects live in its memory; PostgreSQL), so an e2e test or the soak bench can take it away from
running processes and give it back without restarting it.
Threads, not asyncio: the proxy must keep forwarding between tests, when no event loop runs.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType
from urllib.parse import urlsplit


class TcpProxy:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        assert parts.hostname and parts.port, target_url
        self._target = (parts.hostname, parts.port)
        self._scheme = parts.scheme
        self._listener = socket.create_server(("127.0.0.1", 0))  # port 0: a free port
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._up = True
        self._stopped = False
        self._delay = 0.0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    @property
    def url(self) -> str:
        port = self._listener.getsockname()[1]
        return f"{self._scheme}://127.0.0.1:{port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def down(self) -> None:
        """An outage: reset every open connection and every new one."""
        with self._lock:
            self._up = False
            sockets, self._open = self._open, set()
        for sock in sockets:
            _reset(sock)

    def up(self) -> None:
        with self._lock:
            self._up = True

    def slow(self, seconds: float) -> None:
        """Hold every forwarded chunk this long (0: full speed again), as a congested link does."""
        self._delay = max(0.0, seconds)

    def stop(self) -> None:
        self._stopped = True
        self.down()
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                up = self._up
            if not up:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                up = self._up
                if up:
                    self._open.update((client, upstream))
            if not up:  # went down while this one was connecting
                _reset(client)
                _reset(upstream)
                continue
            pumps = [2]

            def pump(src: socket.socket, dst: socket.socket, pair: list[int] = pumps) -> None:
                try:
                    while data := src.recv(256 * 1024):
                        if self._delay:
                            time.sleep(self._delay)
                        dst.sendall(data)
                except OSError:
                    pass
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                with self._lock:
                    pair[0] -= 1
                    last = pair[0] == 0
                    if last:
                        self._open.difference_update((src, dst))
                if last:
                    src.close()
                    dst.close()

            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(src, dst), daemon=True).start()


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a crashed server's connections end.

    The shutdown comes first: a pump thread blocked in `recv` on this socket keeps it alive
    through a bare `close()`, which then sends nothing, and the peer would wait forever on a
    connection that looks open.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
