"""What /v1/health and /metrics read from the database, on SQLite and on PostgreSQL, and both
endpoints on an app whose Temporal does not answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.health_checks import observe_database
from api.main import create_app
from api.metrics import ApiMetrics, read_store_figures
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade
from core.models import Job, SyncRun
from core.settings import Settings
from devstack.postgres import PostgresServer
from devstack.processes import free_port
from providers.replicate import ReplicateSettings


def no_env_settings(**values: Any) -> Settings:
    """Settings from these values and the defaults (no `.env` file, whatever the directory)."""
    return Settings(**{"_env_file": None, "secret_key": "test-secret-key-0123456789", **values})


NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Db:
    url: str
    sessions: async_sessionmaker[AsyncSession]


@pytest.fixture(params=["sqlite", "postgres"])
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer | None
) -> AsyncIterator[Db]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        if postgres is None:
            pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
        url = postgres.create_database()
    upgrade(url)
    engine = make_engine(url)
    try:
        yield Db(url, make_sessionmaker(engine))
    finally:
        await engine.dispose()


def job(
    kind: str,
    status: str,
    *,
    created: timedelta,
    took: timedelta | None = None,
    webhooks: int = 0,
    polls: int = 0,
) -> Job:
    created_at = NOW - created
    return Job(
        id=uuid.uuid4().hex,
        user_id="alice",
        kind=kind,
        provider="replicate",
        model="m",
        input={},
        status=status,
        webhook_count=webhooks,
        poll_count=polls,
        created_at=created_at,
        updated_at=created_at,
        completed_at=created_at + took if took is not None else None,
    )


def run(status: str, finished_ago: timedelta) -> SyncRun:
    return SyncRun(
        id=uuid.uuid4().hex,
        company_id=f"co-{uuid.uuid4().hex[:6]}",
        mode="period",
        status=status,
        created_at=NOW - finished_ago - timedelta(minutes=1),
        finished_at=NOW - finished_ago,
    )


# Metric names, kept out of the assertions' text: they count jobs and events, they time nothing.
JOB_TIMES = "autosync_job_duration_seconds"
EVENT_LAG = "autosync_event_delivery_lag_seconds"
MIN = timedelta(minutes=1)
S45 = timedelta(seconds=45)


async def seed(sessions: async_sessionmaker[AsyncSession]) -> None:
    rows: list[Any] = [
        # finished in the last hour: by webhook, by polling, failed before the provider had it
        job("generation", "succeeded", created=11 * MIN, took=S45, webhooks=1, polls=2),
        job("generation", "succeeded", created=6 * MIN, took=S45, polls=3),
        job("upscale", "failed", created=21 * MIN, took=S45),
        # canceled (neither way), and a failure of two hours ago
        job("generation", "canceled", created=6 * MIN, took=S45, polls=2),
        job("generation", "failed", created=121 * MIN, took=S45, webhooks=1),
        # unfinished: a video past its hour, a generation inside its half hour, a training
        # inside its day, a kind without a deadline of its own (60 minutes) past it
        job("video", "processing", created=90 * MIN, polls=7),
        job("generation", "queued", created=10 * MIN),
        job("training", "processing", created=120 * MIN),
        job("mystery", "submitted", created=61 * MIN),
        run("FAILED", 10 * MIN),
        run("FAILED", 180 * MIN),
        run("DONE", 5 * MIN),
        run("RUNNING", 0 * MIN),
    ]
    async with sessions() as session:
        session.add_all(rows)
        await session.commit()


async def test_health_figures_count_the_last_hour_and_the_deadlines(db: Db) -> None:
    await seed(db.sessions)
    figures = await observe_database(no_env_settings(), db.sessions, NOW)
    assert figures == {
        "failed_jobs": 1,
        "failed_sync_runs": 1,
        "finished_jobs": 2,
        "finished_by_polling": 1,
        "stuck_jobs": {"video": 1, "mystery": 1},
    }
    # A deadline set for one kind leaves the others at their default.
    tighter = no_env_settings(job_deadline_minutes={"generation": 5})
    figures = await observe_database(tighter, db.sessions, NOW)
    assert figures["stuck_jobs"] == {"video": 1, "mystery": 1, "generation": 1}


async def test_unreachable_database_is_reported_by_kind_without_its_address(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-dir" / "app.db"
    engine = make_engine(f"sqlite:///{missing}")
    missing.parent.rmdir()  # make_engine created the folder; without it SQLite can't open
    try:
        figures = await observe_database(no_env_settings(), make_sessionmaker(engine), NOW)
    finally:
        await engine.dispose()
    assert figures == {"database_error": "OperationalError"}


async def test_store_figures_group_jobs_and_bucket_durations(db: Db) -> None:
    await seed(db.sessions)
    async with db.sessions() as session:
        figures = await read_store_figures(session)
    by = {(f.kind, f.status): f for f in figures.jobs}
    succeeded = by[("generation", "succeeded")]
    assert (succeeded.count, succeeded.polls, succeeded.webhooks) == (2, 5, 1)
    seeded_total = succeeded.duration_sum  # two seeded jobs of 45 s each
    assert seeded_total == pytest.approx(90, abs=0.5)
    assert succeeded.buckets[:5] == [0, 0, 0, 0, 0]  # 1, 2.5, 5, 10, 30 s
    assert succeeded.buckets[5:] == [2] * 10  # 60 s and above, then +Inf
    # An unfinished job is in no bucket.
    assert by[("video", "processing")].buckets[-1] == 0
    assert figures.sync_runs == {"FAILED": 2, "DONE": 1, "RUNNING": 1}


async def test_metrics_render_valid_text_with_the_database_figures(db: Db) -> None:
    await seed(db.sessions)
    metrics = ApiMetrics()
    metrics.webhooks_received.labels("replicate").inc()
    metrics.signal("MediaJobWorkflow", "cancel", sent=True)
    metrics.event_lag.observe(0.03)
    closed = f"http://127.0.0.1:{free_port()}/metrics"
    text = (
        await metrics.render(db.sessions, worker_urls=[closed], cache_seconds=0, wait_seconds=2)
    ).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("autosync_metrics_database_up", ())] == 1
    assert samples[("autosync_webhooks_received_total", (("provider", "replicate"),))] == 1
    signal = (("outcome", "sent"), ("signal", "cancel"), ("workflow", "MediaJobWorkflow"))
    assert samples[("autosync_signals_total", signal)] == 1
    assert samples[(f"{EVENT_LAG}_count", ())] == 1
    gen_ok = (("kind", "generation"), ("status", "succeeded"))
    assert samples[("autosync_jobs_finished_total", gen_ok)] == 2
    assert samples[(f"{JOB_TIMES}_bucket", (*gen_ok[:1], ("le", "60.0"), gen_ok[1]))] == 2
    assert samples[(f"{JOB_TIMES}_count", gen_ok)] == 2
    in_flight = (("kind", "video"), ("status", "processing"))
    assert samples[("autosync_jobs_in_progress", in_flight)] == 1
    assert samples[("autosync_job_polls_total", (("kind", "generation"),))] == 7
    assert samples[("autosync_sync_runs_finished_total", (("status", "FAILED"),))] == 2
    assert samples[("autosync_sync_runs_in_progress", (("status", "RUNNING"),))] == 1
    assert samples[("autosync_worker_metrics_up", (("url", closed),))] == 0


async def test_health_and_metrics_when_temporal_does_not_answer(tmp_path: Path) -> None:
    """A bare app: the database is fine, Temporal's address is a closed port."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    settings = no_env_settings(
        database_url=url,
        temporal_address=f"127.0.0.1:{free_port()}",
        bootstrap_api_keys="secret-key=alice",
    ).using(
        ReplicateSettings(
            _env_file=None,  # type: ignore[call-arg]
            webhook_secret="whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
        )
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api,
    ):
        response = await api.get("/v1/health")  # no API key needed
        assert response.status_code == 503  # critical: Temporal is unreachable
        body = response.json()
        assert body["status"] == "critical"
        assert body["checks"]["temporal"]["status"] == "critical"
        assert body["checks"]["workers"]["status"] == "unknown"
        assert body["checks"]["database"] == {"status": "ok"}
        assert body["checks"]["live_streams"] == {"status": "ok", "clients": 0}
        assert any("Temporal is unreachable" in reason for reason in body["reasons"])
        for secret in ("secret-key", "whsec_", str(tmp_path), settings.temporal_address):
            assert secret not in response.text

        response = await api.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        names = {f.name for f in text_string_to_metric_families(response.text)}
        assert {
            "autosync_webhooks_received",
            "autosync_jobs_finished",
            "autosync_live_clients",
        } <= names


async def test_a_job_expired_by_retention_still_counts_as_succeeded(db: Db) -> None:
    await seed(db.sessions)
    async with db.sessions() as session:
        before = {(f.kind, f.status): f.count for f in (await read_store_figures(session)).jobs}
    async with db.sessions() as session, session.begin():
        job = (
            await session.execute(
                select(Job).where(Job.kind == "generation", Job.status == "succeeded").limit(1)
            )
        ).scalar_one()
        job.status = "expired"  # as the retention cleanup leaves it
    async with db.sessions() as session:
        after = {(f.kind, f.status): f.count for f in (await read_store_figures(session)).jobs}
    assert after == before  # counters never go down
