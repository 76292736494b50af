"""GET /v1/health and GET /metrics against the running stack (and an API of our own, in this
process, for the settings the stack's API can't change: other task queues, worker URLs)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.main import create_app
from core.settings import Settings
from devstack.processes import ManagedProcess, free_port
from devstack.stack import ROOT, WORKER_READY
from tests.e2e.conftest import ARTIFACTS, E2E, KEYS, LOCAL_ONLY
from tests.e2e.test_media_jobs import create, wait_job


def no_env_settings(**values: Any) -> Settings:
    """Settings from these values and the defaults (no `.env` file, whatever the directory)."""
    return Settings(**{"_env_file": None, "secret_key": "test-secret-key-0123456789", **values})


# Metric names, kept out of the assertions' text: they count jobs and events, they time nothing.
JOB_TIMES = "autosync_job_duration_seconds"
EVENT_LAG = "autosync_event_delivery_lag_seconds"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples_of(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape_until(
    api: httpx.AsyncClient, done: Callable[[Samples], bool], within: float = 30
) -> Samples:
    """GET /metrics until `done` holds (figures from the database are reused for ~2 s)."""
    deadline = time.monotonic() + within
    while True:
        response = await api.get("/metrics")
        assert response.status_code == 200, response.text
        samples = samples_of(response.text)
        if done(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"/metrics never showed what was expected:\n{response.text}")
        await asyncio.sleep(0.25)


@asynccontextmanager
async def own_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        yield api


async def wait_health(
    api: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool], within: float = 30
) -> httpx.Response:
    """GET /v1/health until `done` holds: a stack that just started has no pollers yet."""
    deadline = time.monotonic() + within
    while True:
        response = await api.get("/v1/health")
        # 503 while critical (a stack that just started has no pollers yet), else 200
        assert response.status_code == (503 if response.json()["status"] == "critical" else 200)
        if done(response.json()):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"/v1/health never showed what was expected: {response.text}")
        await asyncio.sleep(0.25)


def workers_ok(body: dict[str, Any]) -> bool:
    return bool(body["checks"]["workers"]["status"] == "ok")


async def test_health_on_the_running_stack_sees_temporal_workers_and_database(e2e: E2E) -> None:
    async with httpx.AsyncClient(base_url=e2e.stack.api_url, timeout=30) as anonymous:
        response = await wait_health(anonymous, workers_ok)  # no API key needed
    body = response.json()
    checks = body["checks"]
    assert checks["temporal"] == {"status": "ok"}
    assert checks["database"] == {"status": "ok"}
    queues = checks["workers"]["queues"]
    assert queues["media-jobs"]["workflow_pollers"] >= 1
    assert queues["media-jobs"]["activity_pollers"] >= 1
    assert queues["sync-runs"]["workflow_pollers"] >= 1
    assert queues["erp-sync"]["activity_pollers"] >= 1
    # Other tests of the session fail jobs on purpose: whatever the figures, the status is
    # the worst check and every reason comes from a check that is not ok.
    worst = max(
        ("ok", "degraded", "critical").index(c["status"])
        for c in checks.values()
        if c["status"] != "unknown"
    )
    assert body["status"] == ("healthy", "degraded", "critical")[worst]
    assert bool(body["reasons"]) == (body["status"] != "healthy")
    for secret in (*KEYS.values(), e2e.stack.database_url):
        assert secret not in response.text


async def test_metrics_count_webhooks_signals_jobs_and_event_lag(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api)
        done = await wait_job(api, job["id"])
        assert done["status"] == "succeeded" and done["webhook_count"] >= 1, done
        slow = await create(api, input={"prompt": "slow", "_emulator": {"processing_seconds": 30}})
        await wait_job(api, slow["id"], {"submitted", "processing"})
        assert (await api.post(f"/v1/jobs/{slow['id']}/cancel")).status_code == 202
        await wait_job(api, slow["id"], {"canceled"})

    def shows_everything(s: Samples) -> bool:
        return (
            value(s, "autosync_jobs_finished_total", kind="generation", status="succeeded") >= 1
            and value(s, "autosync_jobs_finished_total", kind="generation", status="canceled") >= 1
            and value(s, f"{EVENT_LAG}_count") >= 1
        )

    async with httpx.AsyncClient(base_url=e2e.stack.api_url, timeout=30) as anonymous:
        s = await scrape_until(anonymous, shows_everything)
    assert value(s, "autosync_webhooks_received_total", provider="replicate") >= 1
    assert value(s, "autosync_webhooks_verified_total", provider="replicate") >= 1
    sent = {"workflow": "MediaJobWorkflow", "outcome": "sent"}
    assert value(s, "autosync_signals_total", signal="provider_event", **sent) >= 1
    assert value(s, "autosync_signals_total", signal="cancel", **sent) >= 1
    ok = {"kind": "generation", "status": "succeeded"}
    assert value(s, f"{JOB_TIMES}_count", **ok) >= 1
    assert value(s, f"{JOB_TIMES}_bucket", le="+Inf", **ok) >= 1
    assert value(s, "autosync_job_webhooks_delivered_total", kind="generation") >= 1
    assert ("autosync_job_polls_total", frozenset({("kind", "generation")})) in s
    assert ("autosync_live_clients", frozenset()) in s
    assert value(s, "autosync_metrics_database_up") == 1


@LOCAL_ONLY
async def test_queues_nobody_polls_are_critical_until_a_worker_serving_metrics_starts(
    e2e: E2E,
) -> None:
    """Our own API and worker on task queues of their own: no pollers (critical), then a real
    worker process with WORKER_METRICS_PORT, whose SDK metrics the API appends."""
    tag = uuid.uuid4().hex[:8]
    queues = {
        "MEDIA_TASK_QUEUE": f"media-{tag}",
        "STORAGE_TASK_QUEUE": f"storage-{tag}",
        "SYNC_TASK_QUEUE": f"sync-{tag}",
        "ERP_TASK_QUEUE": f"erp-{tag}",
    }
    port = free_port()
    worker_url = f"http://127.0.0.1:{port}/metrics"
    closed_url = f"http://127.0.0.1:{free_port()}/metrics"
    settings = no_env_settings(
        temporal_address=e2e.stack.temporal_address,
        database_url=e2e.stack.database_url,
        media_task_queue=queues["MEDIA_TASK_QUEUE"],
        storage_task_queue=queues["STORAGE_TASK_QUEUE"],
        sync_task_queue=queues["SYNC_TASK_QUEUE"],
        erp_task_queue=queues["ERP_TASK_QUEUE"],
        health_cache_seconds=0,
        worker_metrics_urls=[worker_url, closed_url],
    )
    worker = ManagedProcess(
        f"worker-metrics-{tag}",
        [sys.executable, str(ROOT / "worker.py")],
        log_dir=ARTIFACTS / "e2e-logs" / e2e.variant,
        env={**e2e.stack.app_env(), **queues, "WORKER_METRICS_PORT": str(port)},
        cwd=ROOT,
    )
    async with own_api(settings) as api:
        body: dict[str, Any] = (await api.get("/v1/health")).json()
        assert body["status"] == "critical"
        assert body["checks"]["temporal"] == {"status": "ok"}
        assert body["checks"]["workers"]["status"] == "critical"
        assert body["checks"]["workers"]["queues"][f"media-{tag}"] == {
            "workflow_pollers": 0,
            "activity_pollers": 0,
        }
        assert any(f"'media-{tag}'" in reason for reason in body["reasons"])

        try:
            worker.start()
            await asyncio.to_thread(worker.wait_log, WORKER_READY)
            body = (await wait_health(api, workers_ok)).json()
            assert all(
                n >= 1 for q in body["checks"]["workers"]["queues"].values() for n in q.values()
            )

            s = await scrape_until(
                api, lambda s: value(s, "autosync_worker_metrics_up", url=worker_url) == 1
            )
            assert value(s, "autosync_worker_metrics_up", url=closed_url) == 0
            from_worker = {name for (name, labels) in s if ("worker_url", worker_url) in labels}
            assert any(name.startswith("temporal_") for name in from_worker), sorted(from_worker)
        finally:
            worker.stop()
