"""A real HTTP server on loopback that serves files chunk by chunk, like a provider's CDN.

Each route is a status, a content type and a function giving the body's chunks. The server
writes one chunk at a time to the socket, so a route's generator runs in step with the client's
reading (TCP backpressure): it can look at what the client did between two chunks.
"""

from __future__ import annotations

import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass
class Route:
    chunks: Callable[[], Iterable[bytes]]
    status: int = 200
    content_type: str = "application/octet-stream"
    length: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class HttpSource:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        """`tls`: serve https with this server context (its certificate names the host)."""
        self.routes: dict[str, Route] = {}
        self.requests: list[str] = []
        self.hosts: list[str | None] = []  # each request's Host header
        source = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                source.requests.append(self.path)
                source.hosts.append(self.headers.get("Host"))
                route = source.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    route = Route(lambda: [b"not found"], status=404)
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.length is not None:
                    self.send_header("Content-Length", str(route.length))
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in route.chunks():
                    if route.length is not None:
                        self.wfile.write(chunk)
                    elif chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if route.length is None:
                    self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:
                pass

        # Port 0: the kernel picks a free port.
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "http" if tls is None else "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def add(self, path: str, body: bytes | Route, content_type: str = "") -> str:
        """Serve `body` at `path`; returns its URL."""
        if isinstance(body, bytes):
            data = body
            body = Route(lambda: _pieces(data), length=len(data))
        if content_type:
            body.content_type = content_type
        self.routes[path] = body
        return self.base_url + path

    def __enter__(self) -> HttpSource:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up early (a refused download, a test's end) is no error here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _pieces(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]
