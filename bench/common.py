"""Small helpers shared by the benches: progress on stderr, percentiles, pacing.

Standard library only: `bench.bare_workflow` runs inside the workflow sandbox next to it.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")

_T0 = time.monotonic()

# The benches measure the orchestration, not the limits put on it: they push thousands of
# requests through one API key (the per-key rate limit would measure itself) and one user holds
# thousands of jobs in flight, so their stacks run without API_RATE_LIMIT_PER_SECOND, the
# per-user cap and provider rate limits (the emulators have none). Admission itself stays on,
# as by default: its round trip is part of every job. bench/fairness.py sets the caps it is about.
UNTHROTTLED_ENV = {
    "API_RATE_LIMIT_PER_SECOND": "0",
    "MAX_ACTIVE_JOBS_PER_USER": "0",
    "PROVIDER_RATE_LIMITS": "{}",
}


def log(message: str) -> None:
    """Progress goes to stderr: stdout holds only the final JSON object."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between the closest ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """p50 / p99 / max of durations given in seconds, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50": rounded(percentile(ms, 50)),
        "p99": rounded(percentile(ms, 99)),
        "max": rounded(max(ms) if ms else None),
    }


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)


async def bounded(count: int, limit: int, action: Callable[[int], Awaitable[T]]) -> list[T]:
    """`action(0) … action(count - 1)` with at most `limit` running at once."""
    semaphore = asyncio.Semaphore(limit)

    async def one(index: int) -> T:
        async with semaphore:
            return await action(index)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def paced(count: int, rate: float, action: Callable[[int], Awaitable[T]]) -> list[T]:
    """`action(i)` started at `i / rate` seconds from now (an open-loop, steady load)."""
    start = time.perf_counter()

    async def one(index: int) -> T:
        await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
        return await action(index)

    return await asyncio.gather(*(one(i) for i in range(count)))


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float, interval: float = 0.2
) -> bool:
    """Poll `check` until it is true or `within` seconds pass; whether it became true."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


def medians(rounds: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Each figure's median over the rounds that have it (the first round names them)."""
    out: dict[str, float | None] = {}
    for name in rounds[0] if rounds else ():
        values = [v for r in rounds if (v := r.get(name)) is not None]
        out[name] = round(statistics.median(values), 2) if values else None
    return out
