"""HTTP request metrics on /metrics: counted by method, route template and status class; the
real app (its middlewares and lifespan) on SQLite, with Temporal unreachable."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from api.request_metrics import status_class
from devstack.processes import free_port
from tests.api.test_temporal_down import settings_for


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = settings_for(tmp_path, f"127.0.0.1:{free_port()}")
    settings.api_rate_limit_per_second = 0.001  # no token comes back during the test
    settings.api_rate_limit_burst = 2
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def samples(body: str, name: str) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name:
                labels = sample.labels
                out[(labels["method"], labels["route"], labels["status"])] = sample.value
    return out


async def test_requests_are_counted_by_route_template_not_raw_path(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api", headers={"Authorization": "Bearer alice-key"}
    ) as api:
        for job_id in ("a1", "b2"):
            assert (await api.get(f"/v1/jobs/{job_id}")).status_code == 404
        # No key: past the rate limit, to the router, which knows no such route.
        assert (await api.get("/no/such/path", headers={"Authorization": ""})).status_code == 404
        # The burst is 2: this one is throttled before routing, and still has its route.
        assert (await api.get("/v1/jobs/c3")).status_code == 429
        body = (await api.get("/metrics")).text

    counts = samples(body, "autosync_http_requests_total")
    assert counts[("GET", "/v1/jobs/{job_id}", "4xx")] == 3
    assert counts[("GET", "unmatched", "4xx")] == 1
    assert not any("a1" in route or "b2" in route for _, route, _ in counts)
    # Every request was also observed in the duration histogram (its count, not its values).
    observed = samples(body, "autosync_http_request_duration_seconds_count")
    assert observed[("GET", "/v1/jobs/{job_id}", "4xx")] == 3


async def test_an_unhandled_error_counts_as_5xx(app: FastAPI) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        assert (await api.get("/boom")).status_code == 500
        body = (await api.get("/metrics")).text
    assert samples(body, "autosync_http_requests_total")[("GET", "/boom", "5xx")] == 1


def test_status_classes() -> None:
    assert [status_class(s) for s in (101, 200, 304, 429, 503, 999)] == [
        "1xx", "2xx", "3xx", "4xx", "5xx", "other",
    ]  # fmt: skip
