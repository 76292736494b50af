"""Both storage backends behind one interface; keys never escape their prefix."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import ensure_keys
from devstack.s3 import S3Server
from storage.base import Aborted, Storage, run_abortable
from storage.keys import output_key, thumbnail_key
from storage.local import LocalStorage
from storage.s3 import S3Storage
from storage.sniff import sniff
from tests.storage.conftest import BUCKET, read_all

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


async def test_put_read_replace_delete(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(PNG)
    key = output_key("generated", "alice", "job1", 0, "png")
    assert not await storage.exists(key)
    await storage.put_file(key, source, "image/png")
    await storage.put_file(key, source, "image/png")  # a retried copy replaces, never duplicates
    assert await storage.exists(key)
    assert await read_all(storage, key) == PNG
    await storage.delete(key)
    assert not await storage.exists(key)
    with pytest.raises(FileNotFoundError):
        await read_all(storage, key)


async def test_presigned_url_reads_the_object_on_s3(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "file"
    source.write_bytes(PNG)
    await storage.put_file("videos/bob/j_0.mp4", source, "video/mp4")
    url = await storage.presigned_url("videos/bob/j_0.mp4", 60)
    if storage.name == "local":
        assert url is None
        return
    assert url is not None
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200 and response.content == PNG
    assert response.headers["content-type"] == "video/mp4"


def test_layout_is_context_user_job_index() -> None:
    assert output_key("upscaled", "u-1", "abc", 2, "webp") == "upscaled/u-1/abc_2.webp"
    assert thumbnail_key("videos", "u-1", "abc", 0) == "thumbnails/videos/u-1/abc_0.webp"


ESCAPES = [
    "../etc",
    "..",
    "a/b",
    "/abs",
    "a\\b",
    "usér",
    "",
    "u\x00x",
    "u\n",  # `$` in a regex would let a trailing newline through
    "u\uff0fx",  # fullwidth solidus, NFKC-equal to "/"
    "\u202eu",  # right-to-left override
    "u\u200fx",  # right-to-left mark
    "\u2024\u2024",  # one-dot leaders, look like ".."
    ".hidden",
    "-rf",
    "x" * 200,
]


@pytest.mark.parametrize("bad", ESCAPES)
def test_keys_never_escape_their_prefix(bad: str) -> None:
    for user, job in ((bad, "j"), ("u", bad)):
        with pytest.raises(ValueError):
            output_key("generated", user, job, 0, "png")
        with pytest.raises(ValueError):
            thumbnail_key("generated", user, job, 0)


@pytest.mark.parametrize("ext", ["../x", "png/../x", "p\x00", "png\n", "", ".", "\uff50ng"])
def test_extensions_are_checked_too(ext: str) -> None:
    with pytest.raises(ValueError):
        output_key("generated", "u", "j", 0, ext)


@pytest.mark.parametrize("index", [-1, True])
def test_output_index_is_a_plain_number(index: int) -> None:
    with pytest.raises(ValueError):
        output_key("generated", "u", "j", index, "png")


def test_unknown_context_is_refused() -> None:
    with pytest.raises(ValueError):
        output_key("secrets", "u", "j", 0, "png")
    with pytest.raises(ValueError):
        thumbnail_key("../thumbnails", "u", "j", 0)


@pytest.mark.parametrize(
    "key", ["../outside.png", "/etc/passwd", "a//b", "a/./b", "a/../../b", "a/b\x00", "", "a/"]
)
async def test_every_backend_refuses_unsafe_keys(
    storage: Storage, key: str, tmp_path: Path
) -> None:
    source = tmp_path / "file"
    source.write_bytes(PNG)
    with pytest.raises(ValueError):
        await storage.put_file(key, source, "image/png")
    with pytest.raises(ValueError):
        await storage.exists(key)
    with pytest.raises(ValueError):
        await storage.delete(key)
    with pytest.raises(ValueError):
        await read_all(storage, key)


def test_local_storage_refuses_keys_outside_its_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalStorage(tmp_path).path_for("../outside.png")


async def test_local_storage_does_not_follow_a_symlink_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "store"
    (root / "generated").mkdir(parents=True)
    (root / "generated" / "mallory").symlink_to(outside, target_is_directory=True)
    source = tmp_path / "file"
    source.write_bytes(PNG)
    store = LocalStorage(root)
    with pytest.raises(ValueError):
        await store.put_file("generated/mallory/j_0.png", source, "image/png")
    assert list(outside.iterdir()) == []


async def test_a_cancelled_transfer_is_stopped_and_waited_for() -> None:
    started, finished = threading.Event(), threading.Event()

    def transfer(abort: threading.Event) -> None:
        started.set()
        try:
            while not abort.wait(0.01):  # a chunk at a time, checking between chunks
                pass
            raise Aborted("stopped between chunks")
        finally:
            finished.set()

    task = asyncio.ensure_future(run_abortable(transfer))
    await asyncio.to_thread(started.wait, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The caller hears of the cancellation only once the thread is done: a cleanup that
    # follows can't be overtaken by an upload still landing.
    assert finished.is_set()


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (PNG, ("image/png", "png")),
        (b"\xff\xd8\xff\xe0", ("image/jpeg", "jpg")),
        (b"GIF89a", ("image/gif", "gif")),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", ("image/webp", "webp")),
        (b"\x00\x00\x00\x1cftypavif", ("image/avif", "avif")),
        (b"\x00\x00\x00\x18ftypmp42", ("video/mp4", "mp4")),
        (b"\x00\x00\x00\x14ftypqt  ", ("video/quicktime", "mov")),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", ("video/webm", "webm")),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", ("audio/wav", "wav")),
        (b"ID3\x04", ("audio/mpeg", "mp3")),
        (b"glTF\x02\x00\x00\x00", ("model/gltf-binary", "glb")),
        (b"PK\x03\x04", ("application/zip", "zip")),
        (b"\x00" * 257 + b"ustar\x0000", ("application/x-tar", "tar")),
        # text that happens to start like a bitmap is not one
        (b"BMX not a bitmap at all", ("application/octet-stream", "bin")),
        (b"<svg xmlns=...", ("application/octet-stream", "bin")),
        (b"<html>", ("application/octet-stream", "bin")),
        (b"", ("application/octet-stream", "bin")),
    ],
)
def test_type_comes_from_the_bytes(head: bytes, expected: tuple[str, str]) -> None:
    assert sniff(head) == expected


async def test_a_public_bucket_gets_permanent_urls(s3_server: S3Server) -> None:
    store = S3Storage(
        BUCKET,
        endpoint_url=s3_server.endpoint_url,
        region="us-east-1",
        public_url="https://cdn.example.com/media/",
    )
    url = await store.presigned_url("generated/u/j_0.png", 60)
    assert url == "https://cdn.example.com/media/generated/u/j_0.png"


@pytest.mark.parametrize("user", ["../admin", "a/b", "ali\u202ece", "bob\n", ""])
async def test_a_user_id_that_could_not_name_a_folder_is_refused_at_start_up(user: str) -> None:
    sessions: Any = None  # refused before the database is touched
    with pytest.raises(ValueError, match="user id"):
        await ensure_keys(sessions, [("key", user, False)])


async def test_presigned_urls_are_sigv4_and_signed_for_the_browser_facing_endpoint(
    s3_server: S3Server, tmp_path: Path
) -> None:
    """docker-compose: the worker writes to http://minio:9000, browsers read another host."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    inside = s3_server.endpoint_url  # http://127.0.0.1:<port>
    outside = inside.replace("127.0.0.1", "localhost")
    store = S3Storage(BUCKET, endpoint_url=inside, region="us-east-1", presign_endpoint_url=outside)
    source = tmp_path / "file"
    source.write_bytes(PNG)
    await store.put_file("generated/u/j_9.png", source, "image/png")
    url = await store.presigned_url("generated/u/j_9.png", 60)
    assert url is not None and url.startswith(f"{outside}/{BUCKET}/generated/u/j_9.png?")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "Signature=" in url
    assert "AWSAccessKeyId=" not in url  # the SigV2 form
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200 and response.content == PNG
