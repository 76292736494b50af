"""Prometheus metrics of the API, of the jobs in the database and of the workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from api.deps import SettingsDep
from api.metrics import ApiMetrics

router = APIRouter(tags=["health"])


def api_metrics(request: Request) -> ApiMetrics:
    """The app's metrics (apps not made by `create_app` get theirs at the first call)."""
    metrics: ApiMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is None:
        metrics = request.app.state.metrics = ApiMetrics()
    return metrics


MetricsDep = Annotated[ApiMetrics, Depends(api_metrics)]


@router.get("/metrics", response_class=Response)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus text format: webhooks, signals, jobs, durations, events, worker SDK metrics."""
    body = await api_metrics(request).render(
        getattr(request.app.state, "sessions", None),
        worker_urls=settings.worker_metrics_urls,
        cache_seconds=settings.health_cache_seconds,
        wait_seconds=settings.health_timeout_seconds,
    )
    # The classic text format (what generate_latest writes), which every scraper reads.
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
