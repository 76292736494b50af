"""Retention deletes exactly what is due, on both backends (a local folder, S3 on moto)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.contracts import JobStatus
from core.models import Event, Job, Project, utcnow
from core.retention.cleanup import referenced_job_ids, run_batch
from core.retention.contracts import RetentionBatchInput, RetentionBatchResult
from core.settings import Settings
from storage.base import Storage
from storage.local import LocalStorage


def _keys(context: str, job_id: str) -> list[str]:
    return [f"{context}/alice/{job_id}_0.png", f"thumbnails/{context}/alice/{job_id}_0.webp"]


async def _seed(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, tmp_path: Path
) -> dict[str, list[str]]:
    now = utcnow()
    # id -> (status, context, age in days)
    rows = {
        "old1": (JobStatus.SUCCEEDED, "generated", 40),
        "old2": (JobStatus.SUCCEEDED, "edited", 31),
        "old3": (JobStatus.SUCCEEDED, "generated", 35),
        "new1": (JobStatus.SUCCEEDED, "generated", 5),
        "shown": (JobStatus.SUCCEEDED, "generated", 50),  # its project's node shows it
        "linked": (JobStatus.SUCCEEDED, "upscaled", 60),  # another node links its output
        "video": (JobStatus.SUCCEEDED, "videos", 20),  # videos: 90 days
        "failed": (JobStatus.FAILED, "generated", 90),
    }
    source = tmp_path / "blob.png"
    source.write_bytes(b"\x89PNG fake")
    keys: dict[str, list[str]] = {}
    async with sessions() as session, session.begin():
        for job_id, (job_status, context, days) in rows.items():
            keys[job_id] = _keys(context, job_id)
            session.add(
                Job(
                    id=job_id, user_id="alice", kind="generation", provider="replicate",
                    model="m", status=job_status.value, storage_provider=storage.name,
                    storage_bucket=storage.bucket, storage_context=context,
                    storage_keys=keys[job_id] if job_status == JobStatus.SUCCEEDED else [],
                    outputs=[{"index": 0, "key": keys[job_id][0]}],
                    project_id="p1" if job_id == "shown" else None,
                    node_id="n1" if job_id == "shown" else None,
                    created_at=now - timedelta(days=days, hours=1),
                    completed_at=now - timedelta(days=days),
                )
            )  # fmt: skip
        session.add(
            Project(
                id="p1", user_id="alice",
                content={"nodes": [
                    {"id": "n1", "data": {"requestId": "shown"}},
                    {"id": "n2", "data": {"image": "https://x.test/v1/jobs/linked/outputs/0"}},
                ]},
            )
        )  # fmt: skip
    for job_keys in keys.values():
        for key in job_keys:
            await storage.put_file(key, source, "image/png")
    return keys


async def _run_all(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, settings: Settings
) -> list[RetentionBatchResult]:
    results: list[RetentionBatchResult] = []
    batch = RetentionBatchInput(batch_size=2)
    while True:
        result = await run_batch(sessions, storage, settings, batch)
        results.append(result)
        if result.done or result.last_id is None:
            return results
        batch = RetentionBatchInput(
            batch_size=2, after_completed_at=result.last_completed_at, after_id=result.last_id
        )


async def test_retention_deletes_exactly_what_is_due(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, tmp_path: Path
) -> None:
    keys = await _seed(sessions, storage, tmp_path)
    settings = Settings(output_retention_days=30, output_retention_days_by_context={"videos": 90})
    results = await _run_all(sessions, storage, settings)
    assert len(results) > 1  # batches of two: the cursor moved on
    assert sum(r.expired for r in results) == 3
    assert sum(r.kept for r in results) == 2
    assert sum(r.objects_deleted for r in results) == 6

    async with sessions() as session:
        statuses = {j: s for j, s in (await session.execute(select(Job.id, Job.status))).all()}
        stamped = (
            (await session.execute(select(Job.id).where(Job.objects_deleted_at.is_not(None))))
            .scalars()
            .all()
        )
        expired_events = (
            (await session.execute(select(Event.payload).where(Event.type == "job.expired")))
            .scalars()
            .all()
        )
    due = {"old1", "old2", "old3"}
    assert {j for j, s in statuses.items() if s == JobStatus.EXPIRED.value} == due
    assert statuses["failed"] == JobStatus.FAILED.value
    assert set(stamped) == due
    assert sorted(e["id"] for e in expired_events) == sorted(due)
    for job_id, job_keys in keys.items():
        for key in job_keys:
            assert await storage.exists(key) == (job_id not in due), key

    # Idempotent: a second cleanup finds nothing more to do.
    again = await _run_all(sessions, storage, settings)
    assert sum(r.expired for r in again) == 0 and sum(r.objects_deleted for r in again) == 0


async def test_a_cleanup_interrupted_after_the_claim_is_finished_by_the_next(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, tmp_path: Path
) -> None:
    keys = await _seed(sessions, storage, tmp_path)
    async with sessions() as session, session.begin():
        job = await session.get(Job, "old1")
        assert job is not None
        job.status, job.expired_at = JobStatus.EXPIRED.value, utcnow()  # claimed, then a crash
    result = await run_batch(sessions, storage, Settings(), RetentionBatchInput(batch_size=10))
    assert result.objects_deleted == 2 and result.expired == 0  # no period set: nothing new
    assert not await storage.exists(keys["old1"][0])
    assert await storage.exists(keys["old2"][0])


async def test_no_retention_period_keeps_everything(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, tmp_path: Path
) -> None:
    keys = await _seed(sessions, storage, tmp_path)
    result = await run_batch(sessions, storage, Settings(), RetentionBatchInput())
    assert result.looked_at == 0 and result.expired == 0
    assert all([await storage.exists(k) for job_keys in keys.values() for k in job_keys])


def test_project_references_are_request_ids_and_output_links() -> None:
    contents: list[dict[str, Any]] = [
        {"nodes": [{"id": "a", "data": {"requestId": "j1"}}, "junk", {"id": "b"}]},
        {"nodes": [{"id": "c", "data": {"src": "/v1/jobs/j2/outputs/1?token=x"}}]},
        {"nodes": "not a list"},
    ]
    assert referenced_job_ids(contents) == {"j1", "j2"}


async def test_retention_on_each_database(
    sessions_each_db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "store")
    keys = await _seed(sessions_each_db, storage, tmp_path)
    settings = Settings(output_retention_days=30, output_retention_days_by_context={"videos": 90})
    results = await _run_all(sessions_each_db, storage, settings)
    assert sum(r.expired for r in results) == 3
    for job_id, job_keys in keys.items():
        for key in job_keys:
            assert await storage.exists(key) == (job_id not in {"old1", "old2", "old3"}), key
