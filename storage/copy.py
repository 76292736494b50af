"""Copy one output from a provider's (expiring) URL to permanent storage, streaming.

download → temp file (in chunks, hashed on the way) → type from the bytes → dimensions and a
thumbnail for images → upload the file and the thumbnail from disk. No step holds the whole
file in memory, so a worker copies a 2 GB video with the memory it needs for a 2 MB image.

Idempotent: keys depend only on the job, the index and the bytes' type, so a retried copy
writes the same objects again. Every key is appended to `stored` before its upload starts, so
a caller that fails half way knows what to delete.

The URL is the provider's (so possibly a hostile user's): it is fetched through
core.outbound, which refuses internal addresses and objects past MAX_OUTPUT_BYTES. A refused
download raises before anything is uploaded.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

from core.contracts import StoredOutput, StoredThumbnail
from core.outbound import OutboundFetcher
from storage.base import Storage
from storage.images import THUMBNAIL_FORMAT, describe_image
from storage.keys import output_key, thumbnail_key
from storage.sniff import HEAD_BYTES, is_image, sniff

CHUNK = 1024 * 1024
# Why an output has no thumbnail by design (`metadata["thumbnail_skipped"]`).
NO_POSTER = "video: a poster frame needs a video decoder, which is not installed"
NOT_AN_IMAGE = "not an image"


class SourceGone(Exception):
    """The provider no longer has the file (404/410): its URL expired."""


class SourceRefused(Exception):
    """The provider refuses the download for good (a 4xx other than 408/429)."""


class UnsafeKey(Exception):
    """The job's user id or job id can't be part of a storage key (see storage.keys)."""


@dataclass
class Downloaded:
    path: Path
    size: int
    sha256: str
    head: bytes


async def download(
    fetcher: OutboundFetcher, url: str, path: Path, provider: str | None = None
) -> Downloaded:
    """Stream `url` into `path` CHUNK bytes at a time, hashing as it goes.

    5xx, 408, 429 and network errors raise httpx errors (worth retrying); 404/410 raise
    SourceGone, other 4xx SourceRefused; the fetcher's refusals raise OutboundRefused (or
    OutboundTooLarge, part way through the body).
    """
    digest = hashlib.sha256()
    size = 0
    head = b""
    async with fetcher.open(url, provider=provider) as fetched:
        response = fetched.response
        code = response.status_code
        if code in (404, 410):
            raise SourceGone(f"HTTP {code} for {url}")
        # A 3xx here is a redirect without a Location: there is nothing to store.
        if 300 <= code < 500 and code not in (408, 429):
            raise SourceRefused(f"HTTP {code} for {url}")
        response.raise_for_status()
        with path.open("wb") as handle:
            async for chunk in fetched.iter_bytes(CHUNK):
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                digest.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(handle.write, chunk)
    return Downloaded(path=path, size=size, sha256=digest.hexdigest(), head=head)


async def copy_output(
    fetcher: OutboundFetcher,
    storage: Storage,
    url: str,
    workdir: Path,
    *,
    context: str,
    user_id: str,
    job_id: str,
    index: int,
    thumbnail_max_edge: int,
    stored: list[str],
    provider: str | None = None,
) -> StoredOutput:
    """Copy output `index` from `url` to `{context}/{user_id}/{job_id}_{index}.{ext}`.

    `provider` names whose output it is, for PROVIDER_OUTPUT_HOSTS.
    """
    source = workdir / f"{index}"
    got = await download(fetcher, url, source, provider)
    content_type, ext = sniff(got.head)
    try:
        key = output_key(context, user_id, job_id, index, ext)
        thumb_ext = THUMBNAIL_FORMAT[2]
        thumb_key = thumbnail_key(context, user_id, job_id, index, thumb_ext)
    except ValueError as exc:
        raise UnsafeKey(str(exc)) from exc

    metadata: dict[str, object] = {}
    width = height = None
    thumbnail: StoredThumbnail | None = None
    thumb_path = workdir / f"{index}.thumbnail.{thumb_ext}"
    facts = None
    if is_image(content_type):
        facts = await asyncio.to_thread(describe_image, source, thumb_path, thumbnail_max_edge)
        width, height = facts.width, facts.height
        if facts.error:
            metadata["thumbnail_error"] = facts.error
    else:
        video = content_type.startswith("video/")
        metadata["thumbnail_skipped"] = NO_POSTER if video else NOT_AN_IMAGE

    stored.append(key)
    await storage.put_file(key, source, content_type)
    source.unlink(missing_ok=True)  # free the disk before the next output
    if facts is not None and facts.thumbnail is not None:
        assert facts.thumbnail_width and facts.thumbnail_height and facts.thumbnail_bytes
        stored.append(thumb_key)
        await storage.put_file(thumb_key, facts.thumbnail, THUMBNAIL_FORMAT[1])
        thumbnail = StoredThumbnail(
            key=thumb_key,
            content_type=THUMBNAIL_FORMAT[1],
            width=facts.thumbnail_width,
            height=facts.thumbnail_height,
            bytes=facts.thumbnail_bytes,
        )
        thumb_path.unlink(missing_ok=True)
    return StoredOutput(
        index=index,
        key=key,
        content_type=content_type,
        bytes=got.size,
        sha256=got.sha256,
        source_url=url,
        width=width,
        height=height,
        thumbnail=thumbnail,
        metadata=metadata,
    )
