"""Local-folder storage: objects are files under a root, written atomically.

A key is checked (`check_key`), then its resolved path must still be under the resolved root,
so neither `../`, an absolute key nor a symlink planted in the folder leads outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from storage.base import Aborted, run_abortable
from storage.keys import check_key

CHUNK = 1024 * 1024


class LocalStorage:
    name = "local"
    bucket: str | None = None

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def path_for(self, key: str) -> Path:
        check_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"storage key {key!r} escapes the storage folder")
        return path

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self.path_for(key)

        def copy(abort: threading.Event) -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Unique per attempt: a retry may overlap an attempt that is still finishing.
            partial = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.partial")
            try:
                with path.open("rb") as source, partial.open("wb") as sink:
                    while chunk := source.read(CHUNK):
                        if abort.is_set():
                            raise Aborted(key)
                        sink.write(chunk)
                    sink.flush()
                    os.fsync(sink.fileno())  # on disk before the job can say `succeeded`
                os.replace(partial, target)  # readers never see half a file
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            _fsync_dir(target.parent)

        await run_abortable(copy)

    async def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    async def delete(self, key: str) -> None:
        self.path_for(key).unlink(missing_ok=True)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        handle = await asyncio.to_thread(open, path, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk
        finally:
            handle.close()

    async def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        return None


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable too (not possible on every platform: best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
