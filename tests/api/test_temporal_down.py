"""Temporal down at request time: 503 with Retry-After, never a 500, and no row left behind that
nobody will act on. The real app (its lifespan, SQLite) pointed at a closed port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from api.main import create_app
from core.contracts import JobStatus, SyncStatus
from core.migrate import upgrade
from core.models import Job, SyncRun
from core.settings import Settings
from devstack.processes import free_port
from providers.replicate import ReplicateSettings
from tests.errors import error_of

JOB = {"kind": "generation", "provider": "replicate", "input": {"prompt": "a fox"}}


def settings_for(tmp_path: Path, temporal_address: str) -> Settings:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        secret_key="test-secret-key-0123456789",
        bootstrap_api_keys="admin-key=root:admin,alice-key=alice",
        erp_tokens={"acme": "t"},
        temporal_address=temporal_address,
        storage_dir=str(tmp_path / "storage"),
        public_base_url="http://api.test",
    ).using(ReplicateSettings(_env_file=None, api_token="t"))  # type: ignore[call-arg]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    application = create_app(settings_for(tmp_path, f"127.0.0.1:{free_port()}"))
    async with application.router.lifespan_context(application):
        yield application


def api(app: FastAPI, key: str = "alice-key", **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {key}", **headers},
    )


async def jobs(app: FastAPI) -> list[Job]:
    async with app.state.sessions() as session:
        return list((await session.scalars(select(Job))).all())


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert error_of(response)["code"] in ("orchestrator_unavailable", "unavailable")


async def test_a_job_without_a_key_answers_503_and_is_failed_not_left_queued(
    app: FastAPI,
) -> None:
    async with api(app) as alice:
        response = await alice.post("/v1/jobs", json=JOB)
    assert_unavailable(response)
    [job] = await jobs(app)
    assert job.status == JobStatus.FAILED.value and "could not start" in (job.error or "")
    assert error_of(response)["details"]["job_id"] == job.id


async def test_a_job_with_a_key_stays_queued_for_the_retry_and_the_sweep(app: FastAPI) -> None:
    async with api(app, **{"Idempotency-Key": "k-1"}) as alice:
        first = await alice.post("/v1/jobs", json=JOB)
        again = await alice.post("/v1/jobs", json=JOB)
    assert_unavailable(first)
    assert_unavailable(again)
    [job] = await jobs(app)  # the retry found the same job: no second row
    assert job.status == JobStatus.QUEUED.value
    assert "Idempotency-Key" in error_of(first)["message"]


async def test_a_queued_job_reads_without_its_place_in_line(app: FastAPI) -> None:
    async with api(app, **{"Idempotency-Key": "k-3"}) as alice:
        job_id = error_of(await alice.post("/v1/jobs", json=JOB))["details"]["job_id"]
        response = await alice.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["queue_position"], body["priority"]) == ("queued", None, 1)


async def test_a_sync_run_answers_503_and_frees_the_companys_slot(app: FastAPI) -> None:
    body = {"company_id": "acme", "mode": "incremental"}
    async with api(app, "admin-key") as admin:
        first = await admin.post("/v1/sync-runs", json=body)
        second = await admin.post("/v1/sync-runs", json=body)
    assert_unavailable(first)
    # not a 409: the first run does not hold the company's one active slot
    assert_unavailable(second)
    async with app.state.sessions() as session:
        runs = (await session.scalars(select(SyncRun))).all()
    assert len(runs) == 2
    assert {run.status for run in runs} == {SyncStatus.FAILED.value}


async def test_schedules_and_recovery_answer_503(app: FastAPI) -> None:
    async with api(app, "admin-key") as admin:
        created = await admin.post("/v1/schedules", json={"company_id": "acme", "every_minutes": 5})
        listed = await admin.get("/v1/schedules")
        paused = await admin.post("/v1/schedules/acme/pause")
        swept = await admin.post("/v1/recovery/check")
    for response in (created, listed, paused, swept):
        assert_unavailable(response)


async def test_cancelling_while_temporal_is_down_answers_503_and_changes_nothing(
    app: FastAPI,
) -> None:
    async with api(app, **{"Idempotency-Key": "k-2"}) as alice:
        job_id = error_of(await alice.post("/v1/jobs", json=JOB))["details"]["job_id"]
        response = await alice.post(f"/v1/jobs/{job_id}/cancel")
    assert_unavailable(response)
    [job] = await jobs(app)
    assert job.status == JobStatus.QUEUED.value
