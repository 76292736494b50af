"""Request limits as ASGI middleware: a body cap on every route, and a rate limit per API key.

Both answer before any route runs, in the API's one error shape. The body cap trusts no
`Content-Length`: bytes are counted as they arrive, so a chunked body is stopped at the cap too.
`/webhooks/*` keeps its own cap (WEBHOOK_MAX_BODY_BYTES, read by the route).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

TOO_LARGE = "payload_too_large"
WEBHOOK_PREFIX = "/webhooks/"
# Routes the rate limit leaves alone: provider callbacks, probes, scrapers, the page's files.
UNLIMITED_PATHS = ("/v1/health", "/metrics", "/", "/favicon.ico")
UNLIMITED_PREFIXES = (WEBHOOK_PREFIX, "/static/", "/v1/health/")
# Keys remembered at once per process; the least recently seen is forgotten first (a flood of
# made-up keys can't grow memory).
MAX_BUCKETS = 10_000


def _size(limit: int) -> str:
    for unit, factor in (("MB", 1024**2), ("KB", 1024)):
        if limit >= factor and limit % factor == 0:
            return f"{limit // factor} {unit}"
    return f"{limit} bytes"


def too_large_message(limit: int) -> str:
    return f"request body is larger than the {_size(limit)} limit ({limit} bytes)"


class BodyTooLarge(HTTPException):
    """Raised while a route reads a body past the cap; the app answers it as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, {"code": TOO_LARGE, "message": too_large_message(limit), "limit_bytes": limit}
        )


def too_large(limit: int) -> Response:
    return error_response(
        413, too_large_message(limit), code=TOO_LARGE, details={"limit_bytes": limit}
    )


class BodyLimit:
    """413 for a body over `max_bytes` (by its Content-Length, or counted as it streams)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(WEBHOOK_PREFIX):
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(limit)(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # Read outside a route (nothing turned it into a response): answer it here.
            if started:
                raise
            await too_large(limit)(scope, receive, send)


class TokenBucket:
    """`rate` tokens a second up to `burst`; each request takes one."""

    __slots__ = ("tokens", "updated")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.updated = now

    def take(self, rate: float, burst: int, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        self.tokens = min(float(burst), self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


class RateLimit:
    """429 with Retry-After once an API key spends its burst faster than `per_second`.

    Per process: with N API replicas a key may make N times as many requests. Requests
    without a bearer key are left to the auth check (401) and to the link-token checks.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self.buckets: OrderedDict[bytes, TokenBucket] = OrderedDict()

    def _limited(self, path: str) -> bool:
        return path not in UNLIMITED_PATHS and not path.startswith(UNLIMITED_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.per_second <= 0 or scope["type"] != "http" or not self._limited(scope["path"]):
            await self.app(scope, receive, send)
            return
        auth = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, key = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not key.strip():
            await self.app(scope, receive, send)
            return
        wait = self._take(hashlib.sha256(key.strip()).digest())
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            answer = error_response(
                429,
                f"too many requests for this API key: at most {self.per_second:g} a second "
                f"(bursts of {self.burst}); retry after {retry_after} s",
                code="rate_limited",
                details={"retry_after_seconds": retry_after},
                headers={"Retry-After": str(retry_after)},
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _take(self, key: bytes) -> float:
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.burst, now)
            if len(self.buckets) > MAX_BUCKETS:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        return bucket.take(self.per_second, self.burst, now)
