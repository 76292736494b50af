"""Copying an output: from a real HTTP server to both real backends, streaming, with thumbnails."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from core.contracts import StoredOutput
from core.outbound import OutboundFetcher, OutboundPolicy, normalise_origin
from devstack.s3 import S3Server
from emulators.scaffold.media import FileSpec, iter_file
from storage.base import Storage
from storage.copy import NO_POSTER, SourceGone, SourceRefused, UnsafeKey, copy_output
from storage.s3 import TRANSFER
from tests.storage.conftest import BUCKET, read_all
from tests.storage.http_source import HttpSource, Route

MB = 1024 * 1024


@pytest.fixture
def source() -> Iterator[HttpSource]:
    with HttpSource() as server:
        yield server


@pytest.fixture
async def http(source: HttpSource) -> AsyncIterator[OutboundFetcher]:
    """The outbound fetcher, with the loopback source allowed (as emulators are)."""
    policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(source.base_url)}))
    async with OutboundFetcher(policy) as client:
        yield client


def pillow_image(fmt: str, size: tuple[int, int], mode: str = "RGB", **save: object) -> bytes:
    image = Image.new(mode, size, "red" if mode == "RGB" else None)
    for x in range(0, size[0], 7):  # something to resample, not a flat square
        image.putpixel((x, x % size[1]), (0, 0, 255, 255)[: len(image.getbands())])
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 1024x768 pixels, displayed 768x1024
    return pillow_image("JPEG", (1024, 768), exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [Image.new("P", (300, 200), colour) for colour in (1, 2)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    return out.getvalue()


def emulator_file(kind: str) -> bytes:
    return b"".join(iter_file(FileSpec(kind=kind, seed="x")))  # type: ignore[arg-type]


async def copy(
    http: OutboundFetcher,
    storage: Storage,
    url: str,
    workdir: Path,
    *,
    context: str = "generated",
    user_id: str = "alice",
    job_id: str = "job1",
    index: int = 0,
    stored: list[str] | None = None,
) -> StoredOutput:
    await asyncio.to_thread(workdir.mkdir, exist_ok=True)
    return await copy_output(
        http,
        storage,
        url,
        workdir,
        context=context,
        user_id=user_id,
        job_id=job_id,
        index=index,
        thumbnail_max_edge=512,
        stored=[] if stored is None else stored,
    )


# (context, file, path it is served at (the extension lies), content type, extension,
#  displayed size, thumbnail size)
KINDS = [
    ("generated", rotated_jpeg(), "/a.png", "image/jpeg", "jpg", (768, 1024), (384, 512)),
    ("edited", pillow_image("PNG", (600, 300), "RGBA"), "/b", "image/png", "png", (600, 300),
     (512, 256)),
    ("upscaled", pillow_image("WEBP", (100, 50)), "/c.jpg", "image/webp", "webp", (100, 50),
     (100, 50)),
    ("generated", animated_gif(), "/d.webp", "image/gif", "gif", (300, 200), (300, 200)),
    ("generated", emulator_file("png"), "/e.png", "image/png", "png", (64, 64), (64, 64)),
    ("videos", emulator_file("mp4"), "/f.png", "video/mp4", "mp4", None, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("context", "body", "path", "content_type", "ext", "size", "thumb"),
    KINDS,
    ids=[f"{k[0]}-{k[4]}" for k in KINDS],
)
async def test_every_kind_lands_at_its_key_with_a_thumbnail(
    storage: Storage,
    source: HttpSource,
    http: OutboundFetcher,
    tmp_path: Path,
    context: str,
    body: bytes,
    path: str,
    content_type: str,
    ext: str,
    size: tuple[int, int] | None,
    thumb: tuple[int, int] | None,
) -> None:
    stored: list[str] = []
    url = source.add(path, body)
    output = await copy(http, storage, url, tmp_path / "work", context=context, stored=stored)

    assert output.key == f"{context}/alice/job1_0.{ext}"
    assert output.content_type == content_type
    assert output.bytes == len(body)
    assert output.sha256 == hashlib.sha256(body).hexdigest()
    assert await read_all(storage, output.key) == body
    if size is None:
        assert (output.width, output.height) == (None, None)
        assert output.thumbnail is None
        assert output.metadata == {"thumbnail_skipped": NO_POSTER}
        assert stored == [output.key]
        return
    assert (output.width, output.height) == size
    assert output.thumbnail is not None and thumb is not None
    assert output.thumbnail.key == f"thumbnails/{context}/alice/job1_0.webp"
    assert output.thumbnail.content_type == "image/webp"
    assert (output.thumbnail.width, output.thumbnail.height) == thumb
    data = await read_all(storage, output.thumbnail.key)
    assert len(data) == output.thumbnail.bytes
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "WEBP" and image.size == thumb
    assert stored == [output.key, output.thumbnail.key]
    assert output.metadata == {}
    assert list((tmp_path / "work").iterdir()) == []  # temp files go as soon as they're stored


async def test_a_broken_image_is_stored_without_a_thumbnail(
    storage: Storage, source: HttpSource, http: OutboundFetcher, tmp_path: Path
) -> None:
    body = b"\x89PNG\r\n\x1a\n" + os.urandom(2048)
    url = source.add("/broken.png", body)
    output = await copy(http, storage, url, tmp_path / "w", job_id="broken")
    assert output.key == "generated/alice/broken_0.png"
    assert await read_all(storage, output.key) == body
    assert output.thumbnail is None and output.width is None
    assert output.metadata["thumbnail_error"].startswith("no thumbnail: ")
    assert not await storage.exists("thumbnails/generated/alice/broken_0.webp")


async def test_a_png_with_a_huge_private_chunk_is_thumbnailed_from_its_pixels(
    storage: Storage, source: HttpSource, http: OutboundFetcher, tmp_path: Path
) -> None:
    spec = FileSpec(kind="png", seed="big", width=200, height=100, pad_to=40 * MB)
    url = source.add("/padded.png", Route(lambda: iter_file(spec), length=40 * MB))
    output = await copy(http, storage, url, tmp_path / "w")
    assert output.bytes == 40 * MB
    assert (output.width, output.height) == (200, 100)
    assert output.thumbnail is not None and output.thumbnail.width == 200


@pytest.mark.parametrize(
    ("status", "error"), [(404, SourceGone), (410, SourceGone), (403, SourceRefused)]
)
async def test_a_url_the_provider_refuses_stores_nothing(
    storage: Storage,
    source: HttpSource,
    http: OutboundFetcher,
    tmp_path: Path,
    status: int,
    error: type[Exception],
) -> None:
    url = source.add("/gone.png", Route(lambda: [b"nope"], status=status))
    stored: list[str] = []
    with pytest.raises(error):
        await copy(http, storage, url, tmp_path / "w", stored=stored)
    assert stored == []


async def test_a_provider_outage_is_an_error_worth_retrying(
    storage: Storage, source: HttpSource, http: OutboundFetcher, tmp_path: Path
) -> None:
    url = source.add("/busy.png", Route(lambda: [b"later"], status=503))
    with pytest.raises(httpx.HTTPStatusError):
        await copy(http, storage, url, tmp_path / "w")


@pytest.mark.parametrize(
    ("user_id", "job_id"), [("../../etc", "j"), ("u", "../j"), ("\u202eu", "j"), ("u", "j\n")]
)
async def test_unsafe_ids_are_refused_before_anything_is_stored(
    storage: Storage,
    source: HttpSource,
    http: OutboundFetcher,
    tmp_path: Path,
    user_id: str,
    job_id: str,
) -> None:
    url = source.add("/ok.png", emulator_file("png"))
    stored: list[str] = []
    with pytest.raises(UnsafeKey):
        await copy(
            http, storage, url, tmp_path / "w", user_id=user_id, job_id=job_id, stored=stored
        )
    assert stored == []


async def test_a_retried_copy_writes_the_same_objects(
    storage: Storage, source: HttpSource, http: OutboundFetcher, tmp_path: Path
) -> None:
    url = source.add("/again.jpg", rotated_jpeg())
    first = await copy(http, storage, url, tmp_path / "one")
    second = await copy(http, storage, url, tmp_path / "two")
    assert second == first


# --- streaming: a large file never sits whole in memory -------------------------------------

LARGE = 80 * MB
# What may be in flight between the server and our temp file: kernel socket buffers on both
# sides (a few MB each on loopback) and one chunk in the client. A copy that held the body in
# memory until the end would have written nothing by the time LARGE bytes were sent.
WINDOW = 24 * MB


def watched_body(total: int, on_disk: Path, lags: list[int]) -> Route:
    """`total` bytes (an MP4 header, then a pattern) sent 1 MB at a time.

    Before each chunk it waits until the client has written all but WINDOW of what was sent so
    far to `on_disk`, and records how far behind it was. A client that buffers everything never
    catches up; after a generous wait the server sends on and the lag gives it away.
    """
    header = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    block = hashlib.sha256(b"pattern").digest() * (MB // 32)

    def written() -> int:
        try:
            return on_disk.stat().st_size
        except FileNotFoundError:
            return 0

    def chunks() -> Iterator[bytes]:
        yield header
        sent = len(header)
        while sent < total:
            patience = time.monotonic() + 60  # a fail-safe only: the test asserts the lag
            while sent - written() > WINDOW and time.monotonic() < patience:
                time.sleep(0.005)
            lags.append(sent - written())
            piece = block[: min(len(block), total - sent)]
            sent += len(piece)
            yield piece

    return Route(chunks, content_type="video/mp4", length=total)


def expected_sha256(total: int) -> str:
    digest = hashlib.sha256(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
    block = hashlib.sha256(b"pattern").digest() * (MB // 32)
    left = total - 24
    while left > 0:
        digest.update(block[: min(len(block), left)])
        left -= len(block)
    return digest.hexdigest()


async def test_a_large_video_streams_through_disk_in_chunks(
    storage: Storage,
    source: HttpSource,
    http: OutboundFetcher,
    tmp_path: Path,
    s3_server: S3Server,
) -> None:
    workdir = tmp_path / "work"
    lags: list[int] = []
    url = source.add("/big.mp4", watched_body(LARGE, workdir / "0", lags))
    output = await copy(http, storage, url, workdir, context="videos")

    assert output.key == "videos/alice/job1_0.mp4"
    assert output.bytes == LARGE
    assert output.sha256 == expected_sha256(LARGE)
    # Written to disk as it arrived: never more than WINDOW behind the sender.
    assert len(lags) >= LARGE // MB
    assert max(lags) <= WINDOW, f"the download fell {max(lags):,} bytes behind the sender"
    if storage.name == "s3":
        # Uploaded from the file in parts, not read whole: S3 tags multipart objects `-<parts>`.
        head = s3_server.client().head_object(Bucket=BUCKET, Key=output.key)
        parts = -(-LARGE // TRANSFER.multipart_chunksize)
        assert head["ETag"].strip('"').endswith(f"-{parts}")
        assert head["ContentLength"] == LARGE and head["ContentType"] == "video/mp4"
    else:
        digest = hashlib.sha256()
        async for chunk in storage.read(output.key):
            digest.update(chunk)
        assert digest.hexdigest() == output.sha256
