"""An expired job through the real app (SQLite, Temporal unreachable): listed and filtered by
its status, its outputs answer 410, and a late status write can't bring it back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from api.main import create_app
from core.contracts import JobStatus
from core.db import make_engine, make_sessionmaker
from core.jobs.store import advance_job
from core.models import Job, utcnow
from devstack.processes import free_port
from tests.api.test_temporal_down import api, settings_for


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = settings_for(tmp_path, f"127.0.0.1:{free_port()}")
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    now = utcnow()
    async with sessions() as session, session.begin():
        for job_id, job_status in (("gone", JobStatus.EXPIRED), ("kept", JobStatus.SUCCEEDED)):
            session.add(
                Job(
                    id=job_id, user_id="alice", kind="generation", provider="replicate",
                    model="m", status=job_status.value, completed_at=now,
                    expired_at=now if job_status == JobStatus.EXPIRED else None,
                    outputs=[{"index": 0, "key": f"generated/alice/{job_id}_0.png",
                              "content_type": "image/png", "bytes": 10, "sha256": "0" * 64}],
                )
            )  # fmt: skip
    async with sessions() as session, session.begin():  # a late failure changes nothing
        assert not await advance_job(session, "gone", JobStatus.FAILED, error="late")
    await engine.dispose()
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def test_an_expired_job_is_listed_filtered_and_its_outputs_are_gone(app: FastAPI) -> None:
    async with api(app) as client:
        listed = (await client.get("/v1/jobs", params={"status": "expired"})).json()
        assert [job["id"] for job in listed["items"]] == ["gone"]
        assert listed["items"][0]["status"] == "expired" and listed["items"][0]["expired_at"]
        output = await client.get("/v1/jobs/gone/outputs/0")
        assert output.status_code == 410
        assert "retention" in output.text
        # The job that was kept still has its output (missing on disk here: 404, not 410).
        assert (await client.get("/v1/jobs/kept/outputs/0")).status_code != 410
