"""Keep `make up`'s processes running: restart what crashed, with backoff, and say why.

A crash of one process (a worker SIGKILLed, an emulator that died) must not take the whole
stack down: jobs in flight are durable, so the right answer is to bring the process back.
Only a process that keeps crashing (`max_crashes` within `window_seconds`) stops the stack,
since restarting it again would only hide a real fault.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from devstack.processes import ManagedProcess
from devstack.stack import Stack


@dataclass
class Watched:
    """One supervised process: how to find its current `ManagedProcess` and how to restart it."""

    name: str
    current: Callable[[], ManagedProcess | None]
    restart: Callable[[], None]
    crashes: deque[float] = field(default_factory=deque)
    next_start: float | None = None  # when a crashed process is due to start again


class GaveUp(Exception):
    """A process crashed too often in a short window: the stack stops."""


class Supervisor:
    def __init__(
        self,
        watched: list[Watched],
        *,
        say: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
        max_crashes: int = 5,
        window_seconds: float = 120.0,
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._watched = watched
        self._say = say
        self._clock = clock
        self._max_crashes = max_crashes
        self._window = window_seconds
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff

    def backoff(self, recent_crashes: int) -> float:
        """1 s after the first crash, doubling with each recent one, up to `max_backoff`."""
        return float(
            min(self._max_backoff, self._first_backoff * 2.0 ** max(0, recent_crashes - 1))
        )

    def check(self) -> None:
        """Look at every process once: note new crashes, restart those whose backoff is over.

        Raises GaveUp when one crashed `max_crashes` times within the window.
        """
        now = self._clock()
        for item in self._watched:
            if item.next_start is not None:
                if now >= item.next_start:
                    self._start(item)
                continue
            proc = item.current()
            if proc is None or proc.alive():
                continue
            while item.crashes and now - item.crashes[0] > self._window:
                item.crashes.popleft()
            item.crashes.append(now)
            code = proc.proc.returncode if proc.proc is not None else None
            if len(item.crashes) >= self._max_crashes:
                raise GaveUp(
                    f"{item.name} crashed {len(item.crashes)} times within "
                    f"{self._window:g}s (last exit code {code}); see {proc.log_path}"
                )
            delay = self.backoff(len(item.crashes))
            self._say(
                f"{item.name} exited (code {code}); restarting in {delay:g}s "
                f"[crash {len(item.crashes)} of {self._max_crashes} allowed in "
                f"{self._window:g}s; log: {proc.log_path}]"
            )
            item.next_start = now + delay

    def _start(self, item: Watched) -> None:
        try:
            item.restart()
        except Exception as exc:  # it died again while starting: counts as another crash
            item.crashes.append(self._clock())
            if len(item.crashes) >= self._max_crashes:
                raise GaveUp(f"{item.name} could not be restarted: {exc}") from exc
            delay = self.backoff(len(item.crashes))
            self._say(f"{item.name} failed to restart ({exc}); trying again in {delay:g}s")
            item.next_start = self._clock() + delay
            return
        item.next_start = None
        self._say(f"{item.name} restarted")


def stack_processes(stack: Stack) -> list[Watched]:
    """Every process `make up` started, each restarted the way it was started and waited for."""

    def again(
        get: Callable[[], ManagedProcess | None], ready: Callable[[ManagedProcess], None]
    ) -> Callable[[], None]:
        def restart() -> None:
            proc = get()
            assert proc is not None
            proc.start()
            ready(proc)

        return restart

    def http(url: str) -> Callable[[ManagedProcess], None]:
        return lambda proc: proc.wait_http(url)

    watched = [
        Watched(
            "temporal",
            lambda: stack.temporal,
            again(lambda: stack.temporal, lambda p: p.wait_tcp(stack.config.temporal_port)),
        )
    ]
    emulators: list[tuple[str, Callable[[], ManagedProcess | None], str | None]] = [
        *(
            (f"{name} emulator", partial(stack.emulators.get, name), stack.provider_url(name))
            for name in stack.emulated_providers()
        ),
        ("erp emulator", lambda: stack.erp, stack.erp_url),
        ("pull client emulator", lambda: stack.pull_client, stack.pull_client_url),
    ]
    for name, get, url in emulators:
        if get() is not None:
            watched.append(Watched(name, get, again(get, http(f"{url}/_emulator/health"))))
    watched.append(
        Watched(
            "api", lambda: stack.api, again(lambda: stack.api, http(f"{stack.api_url}/v1/health"))
        )
    )
    # A new worker process (worker-2, worker-3 …: each its own log) rather than the same one.
    watched.append(Watched("worker", lambda: stack.worker, stack.start_worker))
    return watched
