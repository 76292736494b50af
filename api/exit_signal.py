"""Hear SIGTERM/SIGINT before the server acts on them, so open event streams can end first.

uvicorn runs the lifespan's shutdown only after every open response has finished, and an event
stream never finishes by itself: one SSE client would keep the process alive forever. So the
app chains its own handler in front of the server's: it ends the streams, then passes the
signal on unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_exit_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Run `callback` on the running loop when SIGTERM or SIGINT arrives, then hand the signal
    to whatever handled it before (the server's graceful shutdown)."""
    # Python delivers signals to the main thread only; an app run by a test client in another
    # thread has no signals to hear.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        chained = previous.get(signum)
        if callable(chained):
            chained(signum, frame)
        elif chained == signal.SIG_DFL:  # nobody had a handler: die as we would have
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in EXIT_SIGNALS:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            if signal.getsignal(signum) is handler:  # leave a handler installed after ours alone
                signal.signal(signum, old)
