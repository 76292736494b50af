"""The request limits on a small app: the body cap (declared and streamed) and the per-key
rate limit with its Retry-After (the e2e stacks run without the rate limit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from api.errors import install_error_handlers
from api.limits import BodyLimit, RateLimit
from tests.errors import error_message, error_of

LIMIT = 4096


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def small_app(*, per_second: float = 0, burst: int = 1, clock: Clock | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/v1/echo")
    async def echo(body: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(body)}

    @app.post("/webhooks/replicate")
    async def webhook(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/v1/jobs")
    async def jobs() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/v1/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(BodyLimit, max_bytes=LIMIT)
    app.add_middleware(RateLimit, per_second=per_second, burst=burst, clock=clock or Clock())
    return app


def client(app: FastAPI, key: str | None = "k1") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", headers=headers
    )


async def chunks(total: int, size: int = 1024) -> AsyncIterator[bytes]:
    """A JSON body of `total` bytes or so, sent in chunks without a Content-Length."""
    yield b'{"a": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
    yield b'"}'


async def test_a_body_over_the_cap_is_a_413_that_names_the_limit() -> None:
    async with client(small_app()) as api:
        small = await api.post("/v1/echo", json={"a": "x" * 100})
        assert small.status_code == 200, small.text
        big = await api.post("/v1/echo", json={"a": "x" * (LIMIT + 1)})
        assert big.status_code == 413
        assert error_of(big)["code"] == "payload_too_large"
        assert "4 KB" in error_message(big) and str(LIMIT) in error_message(big)


async def test_a_chunked_body_without_content_length_is_stopped_at_the_cap() -> None:
    async with client(small_app()) as api:
        fits = await api.post(
            "/v1/echo", content=chunks(LIMIT // 2), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in fits.request.headers
        assert fits.status_code == 200, fits.text
        big = await api.post(
            "/v1/echo", content=chunks(LIMIT * 4), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in big.request.headers
        assert big.status_code == 413, big.text
        assert error_of(big)["code"] == "payload_too_large"


async def test_webhooks_keep_their_own_cap() -> None:
    async with client(small_app()) as api:
        response = await api.post("/webhooks/replicate", content=b"x" * (LIMIT * 2))
        assert response.status_code == 200 and response.json() == {"bytes": LIMIT * 2}


async def test_a_key_over_its_rate_gets_429_with_retry_after_then_recovers() -> None:
    clock = Clock()
    app = small_app(per_second=0.5, burst=2, clock=clock)
    async with client(app, "k1") as first, client(app, "k2") as second:
        assert [(await first.get("/v1/jobs")).status_code for _ in range(2)] == [200, 200]
        throttled = await first.get("/v1/jobs")
        assert throttled.status_code == 429
        assert throttled.headers["Retry-After"] == "2"  # one token at 0.5/s
        assert error_of(throttled)["code"] == "rate_limited"
        assert "0.5 a second" in error_message(throttled)
        # Other keys have buckets of their own; health stays open to the throttled key.
        assert (await second.get("/v1/jobs")).status_code == 200
        assert (await first.get("/v1/health")).status_code == 200
        clock.now += 2.0
        assert (await first.get("/v1/jobs")).status_code == 200
        assert (await first.get("/v1/jobs")).status_code == 429


@pytest.mark.parametrize("path", ["/v1/health", "/webhooks/replicate"])
async def test_probes_and_webhooks_are_never_throttled(path: str) -> None:
    app = small_app(per_second=0.001, burst=1)
    async with client(app) as api:
        for _ in range(5):
            if path.startswith("/webhooks"):
                response = await api.post(path, content=b"{}")
            else:
                response = await api.get(path)
            assert response.status_code == 200


async def test_zero_turns_the_rate_limit_off() -> None:
    async with client(small_app(per_second=0, burst=1)) as api:
        assert {(await api.get("/v1/jobs")).status_code for _ in range(20)} == {200}


async def test_requests_without_a_key_are_left_to_the_auth_check() -> None:
    async with client(small_app(per_second=0.001, burst=1), key=None) as api:
        assert {(await api.get("/v1/jobs")).status_code for _ in range(5)} == {200}
