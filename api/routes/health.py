"""Health of the service as a whole: `healthy`, `degraded` or `critical`, with the reasons."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from api.deps import HealthMonitorDep, LiveClientsDep, SessionsDep, TemporalDep
from api.health_checks import classify

router = APIRouter(prefix="/v1", tags=["health"])


@router.get(
    "/health",
    responses={
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "description": "critical: the same body, with the reasons",
        }
    },
)
async def health(
    response: Response,
    monitor: HealthMonitorDep,
    temporal: TemporalDep,
    sessions: SessionsDep,
    live: LiveClientsDep,
) -> dict[str, Any]:
    """Temporal, workers, database, recent errors, webhooks, live streams and stuck jobs.

    200 when `healthy` or `degraded`, 503 when `critical` (Temporal or the database is
    unreachable, nobody polls a required task queue, many errors or stuck jobs): container
    health checks and probes need no body parsing. The body is the same either way.
    """
    observations = await monitor.observations(temporal, sessions)
    report = classify(observations.with_live_clients(live)).as_json()
    if report["status"] == "critical":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return report
