"""What every emulator's state object has: config, stats, fault engine, background tasks.

A protocol subclasses `EmulatorBase`, keeps its own jobs or rows, and overrides the hooks:
`forget` (what `POST /_emulator/reset` clears besides faults and counters), `stats_extra`
(its own sections of `GET /_emulator/stats`) and `provider_jobs` (the jobs it created, for
`GET /_emulator/jobs`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from fastapi import Request

from emulators.scaffold.faults import F, FaultEngine
from emulators.scaffold.jobs import ProviderJob
from emulators.scaffold.stats import Stats
from emulators.scaffold.tasks import TaskSet

C = TypeVar("C")
E = TypeVar("E", bound="EmulatorBase[Any, Any]")


class EmulatorBase(Generic[C, F]):
    def __init__(
        self,
        config: C,
        faults: type[F],
        *,
        request_kinds: tuple[str, ...],
        webhook_counters: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.stats = Stats(request_kinds, webhook_counters)
        self.faults: FaultEngine[F] = FaultEngine(faults, self.stats)
        self.tasks = TaskSet()

    async def start(self) -> None:
        """Called when the app starts, before it serves."""

    async def close(self) -> None:
        """Stop every background task (the app is shutting down)."""
        await self.tasks.cancel_all()

    async def reset(self) -> None:
        """Forget everything: tasks, the protocol's own state, faults and counters."""
        await self.tasks.cancel_all()
        self.forget()
        self.faults.reset()
        self.stats.clear()

    def forget(self) -> None:
        """Clear the protocol's own state (its background tasks are already stopped)."""

    def clear_faults(self) -> None:
        """`DELETE /_emulator/faults`: back to no global faults."""
        self.faults.replace(self.faults.model())

    def stats_extra(self) -> dict[str, Any]:
        """The protocol's own sections of `GET /_emulator/stats`."""
        return {}

    def provider_jobs(self) -> Iterable[ProviderJob]:
        """The provider jobs this emulator created, oldest first."""
        return ()


def emulator_of(request: Request, cls: type[E]) -> E:
    """The app's emulator as its own class (for routes that read the request themselves)."""
    emulator = request.app.state.emulator
    assert isinstance(emulator, cls)
    return emulator


def state_of(cls: type[E]) -> Callable[[Request], Awaitable[E]]:
    """A dependency giving routes the app's emulator as its own class."""

    # async: FastAPI runs a plain `def` dependency on its thread pool, a thread hop per
    # request that cost an emulator more CPU than the answer itself.
    async def get_emulator(request: Request) -> E:
        return emulator_of(request, cls)

    return get_emulator
