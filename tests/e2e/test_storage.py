"""Storage end to end: keys and thumbnails of every kind, a storage outage, unsafe ids.

Both stacks: SQLite + a local folder, PostgreSQL + S3 (moto's server behind a TCP proxy that
can play an outage).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from temporalio.api.enums.v1 import EventType

from core.contracts import media_job_workflow_id
from core.db import make_engine, make_sessionmaker
from core.models import Job
from tests.e2e.conftest import E2E, E2E_BUCKET, KEYS, LOCAL_ONLY
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e

IMAGE_URL = "https://example.com/in.png"
# kind: (input, storage context, extension, outputs, displayed size of each image)
KINDS: dict[str, tuple[dict[str, Any], str, str, int, tuple[int, int] | None]] = {
    "generation": (
        {"prompt": "a fox", "num_outputs": 2, "width": 200, "height": 100},
        "generated",
        "png",
        2,
        (200, 100),
    ),
    "edit": ({"prompt": "make it blue", "input_image": IMAGE_URL}, "edited", "png", 1, (128, 128)),
    "upscale": ({"image": IMAGE_URL, "scale": 4}, "upscaled", "png", 1, (128, 128)),
    "video": ({"prompt": "a fox running"}, "videos", "mp4", 1, None),
}


async def stored_object(e2e: E2E, key: str) -> bytes | None:
    """The object under `key` as the backend itself has it (None: missing)."""
    if e2e.s3 is not None:
        client = e2e.s3.client()
        try:
            response = await asyncio.to_thread(client.get_object, Bucket=E2E_BUCKET, Key=key)
        except client.exceptions.NoSuchKey:
            return None
        body: bytes = response["Body"].read()
        return body
    path = e2e.stack.data_dir / "storage" / key
    try:
        return await asyncio.to_thread(path.read_bytes)
    except (FileNotFoundError, NotADirectoryError):
        return None


async def read_by_url(url: str) -> httpx.Response:
    """What a browser's <img src> gets: the signed link as given, no header, redirects followed."""
    async with httpx.AsyncClient(timeout=30, follow_redirects=True) as browser:
        return await browser.get(url)


async def read_by_key(url: str, user: str = "alice") -> httpx.Response:
    """The file a link names, read with `user`'s key in the header instead of the link's token."""
    async with httpx.AsyncClient(timeout=30, follow_redirects=True) as client:
        return await client.get(
            url.partition("?")[0], headers={"Authorization": f"Bearer {KEYS[user]}"}
        )


async def test_every_kind_lands_at_its_key_with_thumbnails(e2e: E2E) -> None:
    async with e2e.api() as api:
        jobs = {kind: await create(api, kind=kind, input=spec[0]) for kind, spec in KINDS.items()}
        finished = await asyncio.gather(*(wait_job(api, job["id"]) for job in jobs.values()))
    for (kind, job), done in zip(jobs.items(), finished, strict=True):
        _, context, ext, count, size = KINDS[kind]
        assert done["status"] == "succeeded", done
        assert done["operation_type"] == kind and done["storage_context"] == context
        assert done["storage_provider"] == ("s3" if e2e.s3 else "local")
        assert done["storage_bucket"] == (E2E_BUCKET if e2e.s3 else None)
        outputs = done["outputs"]
        keys = [f"{context}/alice/{job['id']}_{n}.{ext}" for n in range(count)]
        assert [o["key"] for o in outputs] == keys
        thumbnails = [f"thumbnails/{context}/alice/{job['id']}_{n}.webp" for n in range(count)]
        assert done["storage_keys"] == keys + (thumbnails if size else [])
        for output in outputs:
            stored = await stored_object(e2e, output["key"])
            assert stored is not None and len(stored) == output["bytes"]
            assert hashlib.sha256(stored).hexdigest() == output["sha256"]
            served = await read_by_url(output["url"])
            assert served.status_code == 200 and served.content == stored
            if size is None:
                assert output["content_type"] == "video/mp4" and stored[4:8] == b"ftyp"
                assert output["thumbnail_url"] is None and output["thumbnail_key"] is None
                assert (output["width"], output["height"]) == (None, None)
                assert "video" in output["metadata"]["thumbnail_skipped"]
                no_thumbnail = await read_by_key(f"{output['url'].partition('?')[0]}/thumbnail")
                assert no_thumbnail.status_code == 404
                continue
            assert output["content_type"] == "image/png" and stored.startswith(b"\x89PNG")
            assert (output["width"], output["height"]) == size
            assert output["thumbnail_key"] == thumbnails[output["index"]]
            path = urlsplit(output["url"]).path
            assert urlsplit(output["thumbnail_url"]).path == f"{path}/thumbnail"
            thumbnail = await read_by_url(output["thumbnail_url"])
            assert thumbnail.status_code == 200
            assert thumbnail.content == await stored_object(e2e, output["thumbnail_key"])
            with Image.open(io.BytesIO(thumbnail.content)) as image:
                assert image.format == "WEBP" and image.size == size  # small: not enlarged


async def job_record(e2e: E2E, job_id: str) -> Job:
    """The job's row as the worker wrote it (what the API shows is a view of it)."""
    engine = make_engine(e2e.stack.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            job = await session.get(Job, job_id)
            assert job is not None
            return job
    finally:
        await engine.dispose()


async def test_the_job_record_keeps_where_and_how_it_was_stored(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await create(api, input={"prompt": "a fox", "width": 96, "height": 64})
        done = await wait_job(api, job["id"])
    record = await job_record(e2e, job["id"])
    assert record.storage_provider == ("s3" if e2e.s3 else "local")
    assert record.storage_bucket == (E2E_BUCKET if e2e.s3 else None)
    assert record.operation_type == "generation" and record.storage_context == "generated"
    assert record.storage_keys == [
        f"generated/alice/{job['id']}_0.png",
        f"thumbnails/generated/alice/{job['id']}_0.webp",
    ]
    [output] = record.outputs
    assert (output["width"], output["height"]) == (96, 64)
    assert output["bytes"] == done["outputs"][0]["bytes"] and output["source_url"]
    assert output["thumbnail"]["key"] == record.storage_keys[1]
    summary = record.metadata_["storage"]
    assert summary["context"] == "generated" and summary["operation_type"] == "generation"
    assert summary["outputs"] == 1 and summary["thumbnails"] == 1
    assert summary["bytes"] == output["bytes"]


async def test_outputs_are_private_to_their_owner(e2e: E2E) -> None:
    async with e2e.api() as api:
        job = await wait_job(api, (await create(api))["id"])
    output = job["outputs"][0]
    for url in (output["url"], output["thumbnail_url"]):
        assert (await read_by_key(url, "bob")).status_code == 404
        assert (await read_by_key(url, "admin")).status_code == 200
        async with httpx.AsyncClient() as anonymous:
            assert (await anonymous.get(url.partition("?")[0])).status_code == 401
        # The link itself is what the owner hands out: it opens this file for whoever holds it.
        assert (await read_by_url(url)).status_code == 200


@contextmanager
def storage_outage(e2e: E2E, user: str, context: str) -> Iterator[None]:
    """Storage is unreachable (S3: every connection reset) or refuses writes (a local folder:
    a file sits where `{context}/{user}/` must be, which stops even root) until the end."""
    if e2e.s3_proxy is not None:
        e2e.s3_proxy.down()
        try:
            yield
        finally:
            e2e.s3_proxy.up()
        return
    parent = e2e.stack.data_dir / "storage" / context
    folder, aside = parent / user, parent / f".{user}.aside"
    parent.mkdir(parents=True, exist_ok=True)
    moved = folder.exists()
    if moved:
        folder.rename(aside)
    folder.write_bytes(b"")
    try:
        yield
    finally:
        folder.unlink()
        if moved:
            aside.rename(folder)


async def failed_store_attempts(e2e: E2E, job_id: str, at_least: int) -> int:
    """Wait until `media.store_outputs` has failed and is being retried (its attempt number)."""
    handle = e2e.temporal.get_workflow_handle(media_job_workflow_id(job_id))
    deadline = time.monotonic() + 90
    while True:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if (
                pending.activity_type.name == "media.store_outputs"
                and pending.attempt >= at_least
                and pending.last_failure.message
            ):
                return pending.attempt
        if time.monotonic() > deadline:
            raise AssertionError(f"the copy of {job_id} never failed {at_least - 1} times")
        await asyncio.sleep(0.2)


async def test_a_storage_outage_during_the_copy_is_waited_out(e2e: E2E) -> None:
    async with e2e.api("bob") as api:
        with storage_outage(e2e, "bob", "upscaled"):
            job = await create(api, kind="upscale", input={"image": IMAGE_URL})
            await failed_store_attempts(e2e, job["id"], at_least=3)
            during = (await api.get(f"/v1/jobs/{job['id']}")).json()
            # Never `succeeded` while its outputs can't be stored; nothing half stored either.
            assert during["status"] == "storing", during
            assert during["outputs"] == [] and during["storage_keys"] == []
            assert await stored_object(e2e, f"upscaled/bob/{job['id']}_0.png") is None
        done = await wait_job(api, job["id"], within=120)
    assert done["status"] == "succeeded", done
    output = done["outputs"][0]
    assert output["key"] == f"upscaled/bob/{job['id']}_0.png"
    stored = await stored_object(e2e, output["key"])
    assert stored is not None and hashlib.sha256(stored).hexdigest() == output["sha256"]
    assert await stored_object(e2e, output["thumbnail_key"]) is not None
    # The copy that succeeded was a retry.
    history = await e2e.temporal.get_workflow_handle(
        media_job_workflow_id(job["id"])
    ).fetch_history()
    started = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert started and started[-1] >= 3


@LOCAL_ONLY
async def test_unsafe_ids_are_refused_at_the_api(e2e: E2E) -> None:
    odd = [
        "%EF%BC%8F..%EF%BC%8Fetc",  # fullwidth solidus
        "%E2%80%AEgpj.exe",  # right-to-left override
        "abc%00def",  # NUL
        ".hidden",
        "a%5Cb",  # backslash
        "x" * 65,
    ]
    async with e2e.api() as api:
        for job_id in odd:
            for suffix in ("", "/outputs/0", "/outputs/0/thumbnail"):
                response = await api.get(f"/v1/jobs/{job_id}{suffix}")
                assert response.status_code == 422, (job_id, suffix, response.text)
                if suffix:  # the file routes also open by link: the id is checked first
                    link = f"{e2e.stack.api_url}/v1/jobs/{job_id}{suffix}?token=1.x"
                    assert (await read_by_url(link)).status_code == 422
            assert (await api.post(f"/v1/jobs/{job_id}/cancel")).status_code == 422
        # Traversal never reaches a file: the route doesn't match, or the id is refused.
        for path in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E", "..", "%2e%2e%2f%2e%2e"):
            response = await api.get(f"/v1/jobs/{path}/outputs/0")
            assert response.status_code in (404, 422), (path, response.text)
