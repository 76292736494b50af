"""Storage writes are idempotent: the same bytes written again under the same key leave the
object readable and whole throughout (a retried copy rewrites what an earlier attempt stored)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from storage.base import Storage
from tests.storage.conftest import read_all

MB = 1024 * 1024


async def test_rewriting_a_key_never_leaves_it_missing_or_partial(
    storage: Storage, tmp_path: Path
) -> None:
    data = os.urandom(3 * MB) * 6  # 18 MB: a multipart upload on S3 (8 MB parts)
    digest = hashlib.sha256(data).hexdigest()
    source = tmp_path / "out.bin"
    source.write_bytes(data)
    key = "generated/alice/job_0.bin"
    await storage.put_file(key, source, "application/octet-stream")

    rewrite = asyncio.ensure_future(storage.put_file(key, source, "application/octet-stream"))
    seen = 0
    while not rewrite.done() or seen == 0:
        assert await storage.exists(key)
        assert hashlib.sha256(await read_all(storage, key)).hexdigest() == digest
        seen += 1
    await rewrite
    assert hashlib.sha256(await read_all(storage, key)).hexdigest() == digest
