"""GET /v1/usage sums job costs per day, kind, provider and user (own usage; admins any or all),
and MAX_DAILY_SPEND_PER_USER refuses new jobs with 402. The real app on a real app DB (SQLite,
and PostgreSQL: the day grouping is written per dialect); Temporal is a closed port, so a job
the cap lets through ends in the usual 503."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from api.main import create_app
from core.contracts import JobStatus
from core.migrate import upgrade
from core.models import Job
from core.settings import Settings
from devstack.postgres import PostgresServer
from devstack.processes import free_port
from providers.replicate import ReplicateSettings
from tests.errors import error_of

NOW = datetime.now(UTC)
TODAY = NOW.date()
YESTERDAY = TODAY - timedelta(days=1)


@pytest.fixture(autouse=True)
def _the_clock_at_setup() -> None:
    """The dates as of this test, not of the import: a suite still running past midnight put
    the rows a day off the API's own today (caught when CI's run crossed into December)."""
    global NOW, TODAY, YESTERDAY
    NOW = datetime.now(UTC)
    TODAY = NOW.date()
    YESTERDAY = TODAY - timedelta(days=1)


JOB = {"kind": "generation", "provider": "replicate", "input": {"prompt": "a fox"}}
CAP = 0.4

# (user, kind, provider, status, cost, completed days ago)
ROWS = [
    ("alice", "generation", "replicate", "succeeded", 0.1, 0),
    ("alice", "video", "fal", "succeeded", 0.25, 0),
    ("alice", "generation", "kie", "succeeded", None, 0),  # cost unknown
    ("alice", "generation", "replicate", "failed", None, 0),  # not a cost
    ("alice", "edit", "replicate", "succeeded", 1.0, 1),  # yesterday: not today's spend
    ("alice", "edit", "replicate", "succeeded", 7.0, 40),  # outside the default 30 days
    ("bob", "generation", "fal", "succeeded", CAP, 0),  # exactly at the cap
]


@pytest.fixture(params=["sqlite", "postgres"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer | None
) -> AsyncIterator[FastAPI]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
    else:
        if postgres is None:
            pytest.skip("PostgreSQL is not installed here (.ci/run installs it)")
        url = postgres.create_database()
    upgrade(url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        secret_key="test-secret-key-0123456789",
        bootstrap_api_keys="admin-key=root:admin,alice-key=alice,bob-key=bob,carol-key=carol",
        temporal_address=f"127.0.0.1:{free_port()}",
        storage_dir=str(tmp_path / "storage"),
        public_base_url="http://api.test",
        max_daily_spend_per_user=CAP,
    ).using(ReplicateSettings(_env_file=None, api_token="t"))  # type: ignore[call-arg]
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        async with application.state.sessions() as session:
            for user, kind, provider, status, cost, days_ago in ROWS:
                done = NOW - timedelta(days=days_ago)
                session.add(
                    Job(id=uuid.uuid4().hex, user_id=user, kind=kind, provider=provider,
                        model="m", input={}, status=status, cost_usd=cost,
                        cost_source=None if cost is None else f"{provider}:test",
                        created_at=done, updated_at=done, completed_at=done)
                )  # fmt: skip
            await session.commit()
        yield application


def api(app: FastAPI, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {key}"},
    )


def groups(body: dict[str, object]) -> dict[str, tuple[Any, int, int]]:
    found = body["groups"]
    assert isinstance(found, list)
    return {g["key"]: (g["cost_usd"], g["jobs"], g["unpriced_jobs"]) for g in found}


async def test_a_user_sees_their_own_costs_per_day_kind_and_provider(app: FastAPI) -> None:
    async with api(app, "alice-key") as alice:
        by_day = (await alice.get("/v1/usage")).json()
        by_kind = (await alice.get("/v1/usage", params={"group_by": "kind"})).json()
        by_provider = (await alice.get("/v1/usage", params={"group_by": "provider"})).json()
    assert by_day["user_id"] == "alice" and by_day["daily_cap_usd"] == CAP
    assert by_day["from"] == (TODAY - timedelta(days=29)).isoformat()
    assert by_day["to"] == TODAY.isoformat()
    assert groups(by_day) == {
        YESTERDAY.isoformat(): (1.0, 1, 0),
        TODAY.isoformat(): (pytest.approx(0.35), 3, 1),
    }
    assert groups(by_kind) == {
        "edit": (1.0, 1, 0),
        "generation": (pytest.approx(0.1), 2, 1),
        "video": (0.25, 1, 0),
    }
    assert groups(by_provider) == {
        "fal": (0.25, 1, 0),
        "kie": (0.0, 1, 1),
        "replicate": (pytest.approx(1.1), 2, 0),
    }
    for body in (by_day, by_kind, by_provider):
        assert body["cost_usd"] == pytest.approx(1.35)
        assert (body["jobs"], body["unpriced_jobs"]) == (4, 1)


async def test_the_range_is_of_completion_days_both_included(app: FastAPI) -> None:
    old = (TODAY - timedelta(days=40)).isoformat()
    async with api(app, "alice-key") as alice:
        only_old = (await alice.get("/v1/usage", params={"from": old, "to": old})).json()
        yesterday = YESTERDAY.isoformat()
        one_day = await alice.get("/v1/usage", params={"from": yesterday, "to": yesterday})
    assert only_old["cost_usd"] == 7.0 and only_old["jobs"] == 1
    assert one_day.json()["cost_usd"] == 1.0


async def test_only_admins_see_others_and_everyone(app: FastAPI) -> None:
    async with api(app, "alice-key") as alice:
        refused = await alice.get("/v1/usage", params={"user_id": "bob"})
        own = await alice.get("/v1/usage", params={"user_id": "alice", "group_by": "user"})
    assert refused.status_code == 403, refused.text
    assert groups(own.json()) == {"alice": (pytest.approx(1.35), 4, 1)}
    async with api(app, "admin-key") as admin:
        everyone = (await admin.get("/v1/usage", params={"group_by": "user"})).json()
        bob = (await admin.get("/v1/usage", params={"user_id": "bob"})).json()
    assert everyone["user_id"] is None
    assert groups(everyone) == {"alice": (pytest.approx(1.35), 4, 1), "bob": (CAP, 1, 0)}
    assert everyone["cost_usd"] == pytest.approx(1.35 + CAP)
    assert bob["user_id"] == "bob" and bob["cost_usd"] == CAP


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"from": "2026-02-30"}, "from"),
        ({"from": "2026-11-10", "to": "2026-11-09"}, "after"),
        ({"from": "2024-01-01", "to": "2026-01-01"}, "at most 366 days"),
        ({"to": "9999-12-31"}, "to: must be before"),
        ({"from": "0001-01-01"}, "at most 366 days"),
    ],
)
async def test_bad_ranges_and_groupings_are_422(
    app: FastAPI, params: dict[str, str], where: str
) -> None:
    async with api(app, "alice-key") as alice:
        response = await alice.get("/v1/usage", params=params)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert where in error["message"]


async def test_the_spend_cap_refuses_new_jobs_with_402_once_reached(app: FastAPI) -> None:
    async with api(app, "bob-key") as bob:
        refused = await bob.post("/v1/jobs", json=JOB)
    assert refused.status_code == 402, refused.text
    error = error_of(refused)
    assert error["code"] == "daily_spend_cap_reached"
    assert "MAX_DAILY_SPEND_PER_USER" in error["message"]
    assert error["details"]["spent_usd"] == CAP and error["details"]["cap_usd"] == CAP
    tomorrow = datetime.fromisoformat(error["details"]["resets_at"])
    assert tomorrow.date() == TODAY + timedelta(days=1)
    async with app.state.sessions() as session:
        bobs = await session.scalar(select(func.count()).where(Job.user_id == "bob"))
    assert bobs == 1  # the refused request made no job


async def test_under_the_cap_jobs_are_taken(app: FastAPI) -> None:
    """Alice spent 0.35 today (yesterday's 1.0 is another day's), Carol nothing: both are let
    through to the orchestrator (down here: the usual 503)."""
    for key in ("alice-key", "carol-key"):
        async with api(app, key) as caller:
            response = await caller.post("/v1/jobs", json=JOB)
        assert response.status_code == 503, response.text
    async with app.state.sessions() as session:
        made = await session.scalar(
            select(func.count()).where(Job.status == JobStatus.FAILED.value, Job.model != "m")
        )
    assert made == 2


async def test_the_first_days_of_the_calendar_are_no_error(app: FastAPI) -> None:
    async with api(app, "alice-key") as alice:
        response = await alice.get("/v1/usage", params={"to": "0001-01-05"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["jobs"]) == ("0001-01-01", "0001-01-05", 0)
