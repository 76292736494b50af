"""Local-folder storage: objects are files under a root, written atomically."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

CHUNK = 1024 * 1024


class LocalStorage:
    name = "local"
    bucket: str | None = None

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def path_for(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} escapes the storage folder")
        return path

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self.path_for(key)

        def copy() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            shutil.copyfile(path, partial)
            os.replace(partial, target)  # readers never see half a file

        await asyncio.to_thread(copy)

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
