"""Memory and CPU of the stack's processes (psutil), each counted with its children."""

from __future__ import annotations

import asyncio
import os
import platform
from collections.abc import Mapping
from typing import Any

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process and all its descendants, in MB."""
    total = 0
    procs = _tree(pid)
    if not procs:
        return None
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return round(total / 1e6, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by a process and its live descendants."""
    total = 0.0
    for proc in _tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def busy_seconds() -> float:
    """CPU time the whole machine spent busy so far, all cores together."""
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))


class CpuMeter:
    """CPU seconds each named process tree used between `__init__` and `stop()`.

    `bench` is this process alone (its children are the stack's processes, counted by name);
    `other` is whatever else kept the machine busy meanwhile: other people's work skews the run.
    """

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._start = self._read()

    def _read(self) -> dict[str, float]:
        times = {name: cpu_seconds(pid) for name, pid in self._pids.items()}
        own = psutil.Process().cpu_times()
        times["bench"] = own.user + own.system
        times["machine"] = busy_seconds()
        return times

    def stop(self) -> dict[str, float]:
        now = self._read()
        used = {name: now[name] - self._start[name] for name in now}
        machine_busy = used.pop("machine")
        used["other"] = max(0.0, machine_busy - sum(used.values()))
        return {name: round(seconds, 2) for name, seconds in used.items()}


def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_gb": round(memory.total / 2**30, 1),
        # Other work on the machine skews every figure: load average at the bench's start.
        "load_avg_1m_at_start": round(psutil.getloadavg()[0], 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class PeakRss:
    """Samples a process tree's RSS every `interval` seconds in the background; keeps the peak."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self._pid = pid
        self._interval = interval
        self.peak_mb: float | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> float | None:
        value = rss_mb(self._pid)
        if value is not None and (self.peak_mb is None or value > self.peak_mb):
            self.peak_mb = value
        return value

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self._interval)

    async def __aenter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()
