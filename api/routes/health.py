"""Health of the service as a whole: `healthy`, `degraded` or `critical`, with the reasons."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import SettingsDep, TemporalDep
from api.health_checks import HealthMonitor, classify

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/health")
async def health(request: Request, settings: SettingsDep, temporal: TemporalDep) -> dict[str, Any]:
    """Temporal, workers, database, recent errors, webhooks, live streams and stuck jobs.

    Always 200: the status is in the body (`critical` is for people and alerts, not for a
    load balancer, which would take every API out when a worker is down).
    """
    state = request.app.state
    monitor: HealthMonitor | None = getattr(state, "health_monitor", None)
    if monitor is None:
        monitor = state.health_monitor = HealthMonitor(settings)
    observations = await monitor.observations(temporal, state.sessions)
    hub = getattr(state, "event_hub", None)
    live = hub.clients if hub is not None else None
    return classify(observations.with_live_clients(live)).as_json()
