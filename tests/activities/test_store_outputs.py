"""`media.store_outputs` run again: a retried or overlapping attempt never deletes what a
committed attempt stored.

Real pieces: a migrated SQLite app DB, LocalStorage, a loopback HTTP server serving the files
(through the guarded fetcher, the server's origin allowed as the emulators' are) and the
activity itself under temporalio's ActivityEnvironment, one per attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.media import MediaActivities
from core.contracts import (
    ERR_OUTPUT_VANISHED,
    JobKind,
    JobStatus,
    ProviderPhase,
    ProviderSnapshot,
    StoreRequest,
)
from core.models import Job
from core.outbound import OutboundFetcher, OutboundPolicy, normalise_origin
from emulators.scaffold.media import FileSpec, iter_file
from storage.local import LocalStorage
from tests.storage.http_source import HttpSource, Route

USER = "alice"


def file_bytes(kind: str, seed: str) -> bytes:
    spec = FileSpec(kind=kind, seed=seed, width=48, height=32)  # type: ignore[arg-type]
    return b"".join(iter_file(spec))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclasses.dataclass
class Rig:
    sessions: async_sessionmaker[AsyncSession]
    storage: LocalStorage
    source: HttpSource
    media: MediaActivities

    async def new_job(
        self, kind: JobKind = JobKind.GENERATION, status: JobStatus = JobStatus.PROCESSING
    ) -> str:
        job_id = uuid.uuid4().hex
        async with self.sessions() as session, session.begin():
            session.add(
                Job(id=job_id, user_id=USER, kind=kind.value, provider="replicate", model="m",
                    input={}, status=status.value, provider_job_id="p-1")
            )  # fmt: skip
        return job_id

    async def row(self, job_id: str) -> dict[str, Any]:
        async with self.sessions() as session:
            job = await session.scalar(select(Job).where(Job.id == job_id))
            assert job is not None
            return {
                "status": job.status,
                "outputs": job.outputs,
                "output_data": job.output_data,
                "storage_keys": job.storage_keys,
            }

    async def run(self, request: StoreRequest, attempt: int = 1) -> Any:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=attempt, heartbeat_timeout=None)
        return await env.run(self.media.store_outputs, request)

    async def stored(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.storage.read(key)])


@pytest.fixture
def source() -> Iterator[HttpSource]:
    with HttpSource() as server:
        yield server


@pytest.fixture
async def rig(
    sessions: async_sessionmaker[AsyncSession], source: HttpSource, tmp_path: Path
) -> AsyncIterator[Rig]:
    # As worker.build_workers builds it, with the loopback server allowed like an emulator.
    policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(source.base_url)}))
    async with OutboundFetcher(policy) as fetcher:
        storage = LocalStorage(tmp_path / "storage")
        media = MediaActivities(sessions=sessions, storage=storage, providers={}, fetcher=fetcher)
        yield Rig(sessions=sessions, storage=storage, source=source, media=media)


class Flaky:
    """A route whose body is complete except on the GETs listed in `broken` (1-based): those
    send half the body and hang up, after waiting for `release` if it is given."""

    def __init__(self, data: bytes, broken: set[int], release: threading.Event | None = None):
        self.data, self.broken, self.release = data, broken, release
        self.calls = 0
        self.entered = threading.Event()  # a broken GET has begun

    def route(self) -> Route:
        return Route(self.chunks, length=len(self.data), content_type="image/png")

    def chunks(self) -> Iterator[bytes]:
        self.calls += 1
        if self.calls not in self.broken:
            yield self.data
            return
        self.entered.set()
        if self.release is not None:
            self.release.wait(timeout=30)
        yield self.data[: len(self.data) // 2]
        raise ConnectionError("hung up half way")  # the server closes the connection


def two_outputs(rig: Rig, second: Flaky | bytes) -> tuple[list[str], list[bytes]]:
    first = file_bytes("png", "first")
    second_bytes = second if isinstance(second, bytes) else second.data
    urls = [
        rig.source.add("/out-0.png", first),
        rig.source.add("/out-1.png", second if isinstance(second, bytes) else second.route()),
    ]
    return urls, [first, second_bytes]


def request(
    job_id: str, urls: list[str], kind: JobKind = JobKind.GENERATION, **data: Any
) -> StoreRequest:
    snapshot = ProviderSnapshot(
        provider_job_id="p-1", provider_status="succeeded", phase=ProviderPhase.SUCCEEDED,
        output_urls=urls, output_data=dict(data),
    )  # fmt: skip
    return StoreRequest(job_id=job_id, user_id=USER, kind=kind, snapshot=snapshot)


async def assert_intact(
    rig: Rig, job_id: str, files: list[bytes], committed: dict[str, Any]
) -> None:
    row = await rig.row(job_id)
    assert row == committed, "the database record changed"
    assert row["status"] == JobStatus.SUCCEEDED.value
    for output, data in zip(row["outputs"], files, strict=True):
        assert await rig.storage.exists(output["key"]), f"{output['key']} was deleted"
        stored = await rig.stored(output["key"])
        assert sha(stored) == output["sha256"] == sha(data)
    for key in row["storage_keys"]:
        assert await rig.storage.exists(key), f"{key} was deleted"


# --- a retry after a committed attempt ----------------------------------------------------------


async def test_a_retry_after_the_commit_keeps_the_objects(rig: Rig) -> None:
    """Attempt 1 commits `succeeded` (its answer is lost: the heartbeat timed out meanwhile);
    attempt 2 then fails half way through a download: nothing attempt 1 stored is deleted."""
    flaky = Flaky(file_bytes("png", "second"), broken={2})
    urls, files = two_outputs(rig, flaky)
    job_id = await rig.new_job()
    first = await rig.run(request(job_id, urls), attempt=1)
    committed = await rig.row(job_id)
    assert [o.sha256 for o in first.outputs] == [sha(f) for f in files]

    try:
        again = await rig.run(request(job_id, urls), attempt=2)
    except ApplicationError:
        again = None  # the old behaviour: it copied again, failed and cleaned up
    await assert_intact(rig, job_id, files, committed)
    # It found the committed record and answered with it, without copying anything again.
    assert again is not None and again.outputs == first.outputs
    assert len(rig.source.requests) == 2


async def test_an_overlapping_attempt_that_fails_after_the_commit_deletes_nothing(
    rig: Rig,
) -> None:
    """Attempt 2 starts while attempt 1 still runs (attempt 1's heartbeat timed out but it
    lives on), copies output 0, then fails on output 1 after attempt 1 committed: its
    clean-up finds the job succeeded and leaves the objects (same keys as attempt 1's)."""
    committed_event = threading.Event()
    flaky = Flaky(file_bytes("png", "second"), broken={1}, release=committed_event)
    urls, files = two_outputs(rig, flaky)
    job_id = await rig.new_job()

    second = asyncio.create_task(rig.run(request(job_id, urls), attempt=2))
    assert await asyncio.to_thread(flaky.entered.wait, 30)  # inside output 1's download
    await rig.run(request(job_id, urls), attempt=1)
    committed = await rig.row(job_id)
    committed_event.set()
    with pytest.raises(Exception):  # noqa: B017 - the download's error, whatever its type
        await second
    await assert_intact(rig, job_id, files, committed)


async def test_a_failed_attempt_with_nothing_committed_cleans_up(rig: Rig) -> None:
    """The clean-up still runs when no attempt committed: no partial set is left behind."""
    flaky = Flaky(file_bytes("png", "second"), broken={1, 2, 3, 4, 5})
    urls, _ = two_outputs(rig, flaky)
    job_id = await rig.new_job()
    with pytest.raises(Exception):  # noqa: B017
        await rig.run(request(job_id, urls))
    assert not await rig.storage.exists(f"generated/{USER}/{job_id}_0.png")
    assert (await rig.row(job_id))["status"] == JobStatus.STORING.value


async def test_a_commit_after_a_concurrent_clean_up_is_refused(rig: Rig) -> None:
    """The other order: a failing attempt deleted the keys before this one recorded its
    success. The commit checks its objects under the row's lock and fails (retryable)
    instead of recording outputs that aren't there."""
    urls, _ = two_outputs(rig, file_bytes("png", "second"))
    job_id = await rig.new_job()
    real_put = rig.storage.put_file

    async def put_then_lose(key: str, path: Path, content_type: str) -> None:
        await real_put(key, path, content_type)
        if key.endswith("_1.png"):  # the other attempt's clean-up, between upload and commit
            await rig.storage.delete(key)

    rig.storage.put_file = put_then_lose  # type: ignore[method-assign]
    with pytest.raises(ApplicationError) as failed:
        await rig.run(request(job_id, urls))
    assert failed.value.type == ERR_OUTPUT_VANISHED and not failed.value.non_retryable
    assert (await rig.row(job_id))["status"] == JobStatus.STORING.value

    rig.storage.put_file = real_put  # type: ignore[method-assign]
    done = await rig.run(request(job_id, urls), attempt=2)
    assert [await rig.storage.exists(o.key) for o in done.outputs] == [True, True]


async def test_a_succeeded_job_with_a_missing_object_is_copied_again(rig: Rig) -> None:
    """A recovery restore: the record says succeeded but an object is gone; the next run
    copies again, and a failure part way deletes nothing of the committed job."""
    flaky = Flaky(file_bytes("png", "second"), broken={2})
    urls, files = two_outputs(rig, flaky)
    job_id = await rig.new_job()
    await rig.run(request(job_id, urls))
    committed = await rig.row(job_id)
    lost = committed["outputs"][1]["key"]
    await rig.storage.delete(lost)

    with pytest.raises(Exception):  # noqa: B017 - output 1's download breaks this time
        await rig.run(request(job_id, urls), attempt=2)
    assert await rig.storage.exists(committed["outputs"][0]["key"])  # not cleaned up
    await rig.run(request(job_id, urls), attempt=3)
    await assert_intact(
        rig, job_id, files, {**committed, "storage_keys": committed["storage_keys"]}
    )


# --- trainings ----------------------------------------------------------------------------------


async def test_a_training_stores_its_weights_and_keeps_its_version(rig: Rig) -> None:
    weights = file_bytes("tar", "weights")
    url = rig.source.add("/weights.tar", weights)
    job_id = await rig.new_job(JobKind.TRAINING)
    data = {"version": "me/lora:abc", "weights": url}
    result = await rig.run(request(job_id, [url], JobKind.TRAINING, **data))
    key = f"trainings/{USER}/{job_id}_0.tar"
    assert [o.key for o in result.outputs] == [key]
    row = await rig.row(job_id)
    assert row["status"] == JobStatus.SUCCEEDED.value
    assert row["outputs"][0]["sha256"] == sha(weights) == sha(await rig.stored(key))
    assert row["outputs"][0]["content_type"] == "application/x-tar"
    assert row["output_data"] == {**data, "stored": {"weights": key}}
    assert result.output_data == row["output_data"]


async def test_a_training_snapshot_from_before_the_upgrade_still_stores_its_files(
    rig: Rig,
) -> None:
    """A training polled by an older worker carries its files only in output_data."""
    url = rig.source.add("/lora.tar", file_bytes("tar", "lora"))
    job_id = await rig.new_job(JobKind.TRAINING)
    result = await rig.run(
        request(job_id, [], JobKind.TRAINING, diffusers_lora_file=url, version="v")
    )
    assert [o.key for o in result.outputs] == [f"trainings/{USER}/{job_id}_0.tar"]
