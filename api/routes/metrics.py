"""Prometheus metrics of the API, of the jobs in the database and of the workers."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from api.deps import MetricsDep, SettingsDep, StoreSessionsDep

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(
    api_metrics: MetricsDep, sessions: StoreSessionsDep, settings: SettingsDep
) -> Response:
    """Prometheus text format: webhooks, signals, jobs, durations, events, worker SDK metrics."""
    body = await api_metrics.render(
        sessions,
        worker_urls=settings.worker_metrics_urls,
        cache_seconds=settings.health_cache_seconds,
        wait_seconds=settings.health_timeout_seconds,
    )
    # The classic text format (what generate_latest writes), which every scraper reads.
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)
