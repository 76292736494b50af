"""HTTP request metrics on `/metrics`: count and latency by method, route template and status
class (`2xx` ...), counted in this API process like the webhook counters."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.tracing import route_template

# Seconds; an SSE or WebSocket stream lasts as long as its client stays, so those fall in +Inf.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Paths no route knows (scanners, typos) share one label, so they can't grow the series.
UNMATCHED = "unmatched"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class RequestMetrics:
    """ASGI middleware: `autosync_http_requests_total` and
    `autosync_http_request_duration_seconds`, both by method, route and status class.

    The duration runs from the request's arrival to the end of its response body. A request
    whose client went away before any answer counts with status class `none`.
    """

    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry) -> None:
        self.app = app
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "autosync_http_requests",
            "HTTP requests answered by this API process",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "autosync_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception:
            if not status:
                status.append(500)  # what Starlette's error middleware, outside us, answers
            raise
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            labels = (
                method,
                route_template(scope) or UNMATCHED,
                status_class(status[0]) if status else "none",
            )
            self.requests.labels(*labels).inc()
            self.latency.labels(*labels).observe(time.perf_counter() - started)
