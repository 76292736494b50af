"""Background heartbeats for activities whose work has no natural checkpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from temporalio import activity


@asynccontextmanager
async def heartbeating(every: float = 1.0, first_after: float = 0.0) -> AsyncIterator[None]:
    """Heartbeat in the background, so a stalled transfer still hears a cancel at once.

    `first_after` skips heartbeats for work that ends sooner: each costs a server round trip,
    which short, frequent activities (a page of a sync) would pay for nothing.
    """

    async def beat() -> None:
        await asyncio.sleep(first_after)
        while True:
            activity.heartbeat()
            await asyncio.sleep(every)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
