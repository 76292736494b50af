"""Both storage backends behind one interface; keys never escape their prefix."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.s3 import S3Server
from storage.base import Storage
from storage.keys import output_key
from storage.local import LocalStorage
from storage.s3 import S3Storage
from storage.sniff import sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        server.create_bucket("store-test")
        yield server


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: S3Server
) -> AsyncIterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "store")
        return
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    yield S3Storage("store-test", endpoint_url=s3_server.endpoint_url, region="us-east-1")


async def read_all(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key)])


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


@pytest.mark.parametrize(
    ("user", "job"),
    [
        ("../etc", "j"),
        ("a/b", "j"),
        ("/abs", "j"),
        ("u", ".."),
        ("usér", "j"),
        ("", "j"),
        ("u", "j/../../x"),
    ],
)
def test_keys_never_escape_their_prefix(user: str, job: str) -> None:
    with pytest.raises(ValueError):
        output_key("generated", user, job, 0, "png")


def test_unknown_context_is_refused() -> None:
    with pytest.raises(ValueError):
        output_key("secrets", "u", "j", 0, "png")


def test_local_storage_refuses_keys_outside_its_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalStorage(tmp_path).path_for("../outside.png")


@pytest.mark.parametrize(
    ("head", "url", "expected"),
    [
        (PNG, "https://x/file.jpg", ("image/png", "png")),  # bytes win over the URL
        (b"\xff\xd8\xff\xe0", "", ("image/jpeg", "jpg")),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "", ("image/webp", "webp")),
        (b"\x00\x00\x00\x18ftypmp42", "", ("video/mp4", "mp4")),
        (b"????", "https://x/out.glb?sig=1", ("application/octet-stream", "glb")),
        (b"????", "https://x/noext", ("application/octet-stream", "bin")),
    ],
)
def test_type_comes_from_the_bytes(head: bytes, url: str, expected: tuple[str, str]) -> None:
    assert sniff(head, url) == expected
