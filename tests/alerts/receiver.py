"""A test receiver for alerts: a real HTTP server on loopback that keeps every POST it gets.

`fail_first` answers that many requests with 503 first (the sender must retry them); paths in
`refuse` always get 400 (a receiver that will never take them).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


class AlertReceiver:
    def __init__(self, *, fail_first: int = 0, refuse: frozenset[str] = frozenset()) -> None:
        self.received: list[Received] = []
        self.fail_first = fail_first
        self.refuse = refuse
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    if self.path in receiver.refuse:
                        status = 400
                    else:
                        status = 503 if receiver.fail_first > 0 else 200
                        receiver.fail_first -= 1
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                 body, status)
                    )  # fmt: skip
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def accepted(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path and r.status == 200]

    def __enter__(self) -> AlertReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
