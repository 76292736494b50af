"""Storage backends behind one interface: a local folder or S3 (any S3-compatible endpoint).

Keys are checked by `storage.keys.check_key` in every backend, whoever built them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol, TypeVar

T = TypeVar("T")


class Storage(Protocol):
    name: str
    bucket: str | None

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at `path` under `key`, replacing any object there (idempotent).

        Streams from the file (memory does not grow with its size). When the caller is
        cancelled, the transfer is stopped and waited for before this raises, so no object
        appears under `key` after a cancelled caller has cleaned up.
        """
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; raises FileNotFoundError if it is missing."""
        ...

    async def presigned_url(self, key: str, expires_seconds: int) -> str | None:
        """A URL a browser can read directly (presigned, or the bucket's public URL), if any."""
        ...


class Aborted(Exception):
    """Raised inside a transfer thread whose caller was cancelled."""


async def run_abortable(work: Callable[[threading.Event], T]) -> T:
    """Run blocking `work(abort)` in a thread; on cancellation set `abort` and wait for it.

    A thread can't be killed: `work` checks `abort` between chunks and raises `Aborted`.
    Waiting for it keeps a cancelled upload from landing after its caller deleted the key.
    """
    abort = threading.Event()
    future = asyncio.ensure_future(asyncio.to_thread(work, abort))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        abort.set()
        with contextlib.suppress(BaseException):  # the cancellation is what we report
            await future
        raise
