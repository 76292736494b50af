"""The emulator's clock: wall time plus an offset that `/_emulator/clock` can move forward.

Task lifecycles, `createTime`/`updateTime`/`completeTime` and file expiry all read this clock,
so a test can jump a day ahead to see result URLs expire without waiting for it. Callback
signatures do not: their `X-Webhook-Timestamp` is checked against the receiver's real clock.
"""

from __future__ import annotations

import asyncio
import time


class Clock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._advanced = asyncio.Event()

    def now(self) -> float:
        """Unix seconds, as the emulator sees them."""
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> None:
        """Jump ahead; every sleeper re-checks its deadline at once."""
        self._offset += seconds
        woken, self._advanced = self._advanced, asyncio.Event()
        woken.set()

    def reset(self) -> None:
        self._offset = 0.0

    async def sleep_until(self, when: float) -> None:
        while (left := when - self.now()) > 0:
            advanced = self._advanced
            try:
                async with asyncio.timeout(left):
                    await advanced.wait()
            except TimeoutError:
                pass

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + seconds)
