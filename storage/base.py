"""Storage backends behind one interface: a local folder or S3 (any S3-compatible endpoint)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    name: str
    bucket: str | None

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at `path` under `key`, replacing any object there (idempotent)."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; raises FileNotFoundError if it is missing."""
        ...

    async def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        """A URL a browser can read directly, when the backend has one."""
        ...
