"""`GET /v1/jobs` filters the dashboard's history uses (core.jobs.store.list_jobs): provider and
a creation window, combined with the other filters and the cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.contracts import JobStatus
from core.jobs.store import list_jobs
from core.models import Job

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def add_jobs(sessions: async_sessionmaker[AsyncSession]) -> None:
    rows = [
        ("a", "replicate", "generation", 0),
        ("b", "fal", "generation", 1),
        ("c", "replicate", "upscale", 2),
        ("d", "kie", "generation", 3),
        ("e", "replicate", "generation", 4),
    ]
    async with sessions() as session, session.begin():
        for job_id, provider, kind, day in rows:
            session.add(
                Job(
                    id=job_id, user_id="alice", kind=kind, provider=provider, model="o/m",
                    input={"prompt": "x"}, status=JobStatus.SUCCEEDED.value,
                    created_at=T0 + timedelta(days=day),
                )
            )  # fmt: skip


async def ids(sessions: async_sessionmaker[AsyncSession], **filters: object) -> list[str]:
    async with sessions() as session:
        return [job.id for job in await list_jobs(session, user_id="alice", **filters)]  # type: ignore[arg-type]


async def test_provider_and_window_filter_and_combine(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_jobs(sessions)
    assert await ids(sessions) == ["e", "d", "c", "b", "a"]
    assert await ids(sessions, provider="replicate") == ["e", "c", "a"]
    assert await ids(sessions, provider="replicate", kind="generation") == ["e", "a"]
    # From inclusive, to exclusive: days 1 to 3 hold b, c (d is at the end, left out).
    window = dict(created_from=T0 + timedelta(days=1), created_to=T0 + timedelta(days=3))
    assert await ids(sessions, **window) == ["c", "b"]
    assert await ids(sessions, provider="fal", **window) == ["b"]
    assert await ids(sessions, provider="nobody") == []


async def test_a_window_pages_by_cursor(sessions: async_sessionmaker[AsyncSession]) -> None:
    await add_jobs(sessions)
    first = await ids(sessions, created_from=T0 + timedelta(days=1), limit=2)
    assert first == ["e", "d"]
    async with sessions() as session:
        last = await session.get(Job, "d")
        assert last is not None
        before = (last.created_at, last.id)
    rest = await ids(sessions, created_from=T0 + timedelta(days=1), before=before, limit=2)
    assert rest == ["c", "b"]
