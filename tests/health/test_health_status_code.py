"""GET /v1/health: 503 when critical (for container health checks and probes), else 200."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.deps import get_settings, get_temporal
from api.health_checks import Observations, QueuePollers
from api.routes.health import router
from core.settings import Settings


class FixedMonitor:
    """Stands in for HealthMonitor: answers the same observations every time."""

    def __init__(self, observations: Observations) -> None:
        self._observations = observations

    async def observations(self, client: object, sessions: object) -> Observations:
        return self._observations


def observations(**changes: Any) -> Observations:
    values: dict[str, Any] = dict(
        queues=[
            QueuePollers("media-jobs", "media jobs", 1, 1, required=True),
            QueuePollers("sync-runs", "sync runs", 1, 1, required=True),
        ],
        failed_jobs=0,
        failed_sync_runs=0,
        finished_jobs=20,
        finished_by_polling=0,
        live_clients=0,
        stuck_jobs={},
    )
    values.update(changes)
    return Observations(**values)


async def get_health(obs: Observations) -> httpx.Response:
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_settings] = lambda: Settings()
    app.dependency_overrides[get_temporal] = lambda: None
    app.state.health_monitor = FixedMonitor(obs)
    app.state.sessions = None
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get("/v1/health")


@pytest.mark.parametrize(
    ("changes", "expected_status", "expected_code"),
    [
        ({}, "healthy", 200),
        ({"failed_jobs": 3}, "degraded", 200),
        ({"temporal_error": "connection refused", "queues": None}, "critical", 503),
        ({"database_error": "connection refused"}, "critical", 503),
        (
            {
                "queues": [
                    QueuePollers("media-jobs", "media jobs", 0, 0, required=True),
                    QueuePollers("sync-runs", "sync runs", 1, 1, required=True),
                ]
            },
            "critical",
            503,
        ),
    ],
    ids=["healthy", "degraded", "temporal-down", "database-down", "no-media-worker"],
)
async def test_health_answers_503_only_when_critical(
    changes: dict[str, Any], expected_status: str, expected_code: int
) -> None:
    response = await get_health(observations(**changes))
    assert response.status_code == expected_code, response.text
    body = response.json()
    assert body["status"] == expected_status
    # The body is the whole report either way: a person reading a 503 sees why.
    assert set(body) == {"status", "reasons", "checks"}
    assert bool(body["reasons"]) == (expected_status != "healthy")
