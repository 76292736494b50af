"""Webhook delivery with the webhook fault switches, the same for every emulator that sends them.

The protocol builds each `Message` (URL, body, how to sign an attempt, what its history entries
say); the sender delivers it. Each job has an outbox drained by one task, so a job's webhooks
leave in the order they happened. Terminal messages are retried after each of the retry
delays (a connection error, a timeout or any non-2xx answer is a failure); others get one try.

Faults, from the job's switches:
- `drop_webhooks`: the message is never sent (counted `dropped`);
- `webhook_delay_seconds`: each message waits this long before its first attempt;
- `duplicate_webhooks`: N more deliveries of the same message after the last attempt;
- `reorder_webhooks`: a job's earlier messages are held back and go out after its terminal
  one; a job whose only message is the terminal one has it held until a webhook of another
  job has gone out (or `REORDER_HOLD_SECONDS` passed), so receivers see jobs finish out of
  order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from emulators.scaffold.faults import WebhookFaults
from emulators.scaffold.stats import Stats
from emulators.scaffold.tasks import TaskSet

REORDER_HOLD_SECONDS = 5.0


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class WallClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class WebhookJob(Protocol):
    """What the sender needs of a job: its id, its history and its faults."""

    @property
    def id(self) -> str: ...

    @property
    def history(self) -> list[dict[str, Any]]: ...

    @property
    def faults(self) -> WebhookFaults: ...


@dataclass
class Message:
    """One logical webhook; retries and duplicates send the same body."""

    job: WebhookJob
    url: str
    body: bytes
    headers: Callable[[], dict[str, str]]  # called for each attempt (a fresh signature)
    terminal: bool = True
    entry: dict[str, Any] = field(default_factory=dict)  # protocol fields for its history
    settled: Callable[[], None] | None = None  # once delivered or given up on


@dataclass
class Outbox:
    queue: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    held: list[Message] = field(default_factory=list)
    worker: asyncio.Task[None] | None = None


class WebhookSender:
    def __init__(
        self,
        client: httpx.AsyncClient,
        stats: Stats,
        tasks: TaskSet,
        retry_delays: Sequence[float],
        *,
        clock: Clock | None = None,
        on_change: Callable[[WebhookJob], None] = lambda job: None,
    ) -> None:
        self._client = client
        self._stats = stats
        self._tasks = tasks
        self._retry_delays = retry_delays
        self._clock = clock or WallClock()
        self._on_change = on_change  # told whenever a job's history changes
        self._outboxes: dict[str, Outbox] = {}
        self._parked: list[tuple[str, asyncio.Event]] = []

    def forget(self) -> None:
        """Forget every outbox (their tasks are cancelled with the emulator's TaskSet)."""
        self._outboxes.clear()
        self._parked.clear()

    def send(self, message: Message, *, drop: bool | None = None) -> bool:
        """Queue `message` as the job's faults allow; False if it was dropped."""
        job = message.job
        faults = job.faults
        outbox = self._outboxes.setdefault(job.id, Outbox())
        if faults.drop_webhooks if drop is None else drop:
            self._stats.webhooks["dropped"] += 1
            self._note(job, "webhook_dropped", message)
            if message.terminal:
                self._release_held(outbox)
            return False
        self._stats.webhooks["messages"] += 1
        if faults.reorder_webhooks and not message.terminal:
            outbox.held.append(message)
            return True
        if faults.reorder_webhooks and message.terminal and not outbox.held:
            self._stats.webhooks["reordered"] += 1
            self._note(job, "webhook_reordered", message)
            self._tasks.spawn(self._park(outbox, message), name=f"webhook-held-{job.id}")
            return True
        self._enqueue(outbox, message)
        if message.terminal:
            self._release_held(outbox)
        return True

    def _release_held(self, outbox: Outbox) -> None:
        """The messages `reorder_webhooks` held back go out after the terminal one."""
        for held in outbox.held:
            self._stats.webhooks["reordered"] += 1
            self._note(held.job, "webhook_reordered", held)
            self._enqueue(outbox, held)
        outbox.held.clear()

    def _note(self, job: WebhookJob, kind: str, message: Message) -> None:
        job.history.append({"type": kind, **message.entry, "time": self._clock.now()})
        self._on_change(job)

    async def _park(self, outbox: Outbox, message: Message) -> None:
        passed = asyncio.Event()
        waiting = (message.job.id, passed)
        self._parked.append(waiting)
        try:
            async with asyncio.timeout(REORDER_HOLD_SECONDS):
                await passed.wait()
        except TimeoutError:
            pass
        finally:
            if waiting in self._parked:
                self._parked.remove(waiting)
        self._enqueue(outbox, message)

    def _enqueue(self, outbox: Outbox, message: Message) -> None:
        outbox.queue.put_nowait(message)
        if outbox.worker is None:
            outbox.worker = self._tasks.spawn(
                self._drain(outbox), name=f"webhooks-{message.job.id}"
            )

    async def _drain(self, outbox: Outbox) -> None:
        while True:
            message = await outbox.queue.get()
            await self._deliver(message)
            if outbox.queue.empty():
                # Nothing awaits between this check and returning, so a new message can't slip
                # in unseen: `_enqueue` starts a fresh worker once this one is gone.
                outbox.worker = None
                return

    async def _deliver(self, message: Message) -> None:
        faults = message.job.faults
        if faults.webhook_delay_seconds > 0:
            self._stats.webhooks["delayed"] += 1
            await self._clock.sleep(faults.webhook_delay_seconds)
        delays = self._retry_delays if message.terminal else []
        attempt = 1
        while not await self._attempt(message, attempt) and attempt <= len(delays):
            await self._clock.sleep(delays[attempt - 1])
            attempt += 1
        if message.settled is not None:
            message.settled()
        for _ in range(faults.duplicate_webhooks):
            self._stats.webhooks["duplicates"] += 1
            await self._attempt(message, attempt=1, duplicate=True)

    async def _attempt(self, message: Message, attempt: int, *, duplicate: bool = False) -> bool:
        self._stats.webhooks["attempted"] += 1
        sent_at = self._clock.now()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(
                message.url, content=message.body, headers=message.headers()
            )
            status_code = response.status_code
        except Exception as exc:  # any failure to deliver is data for the test, never a crash
            error = f"{type(exc).__name__}: {exc}"
        ok = status_code is not None and 200 <= status_code < 300
        self._stats.webhooks["delivered" if ok else "failed"] += 1
        message.job.history.append(
            {
                "type": "webhook",
                **message.entry,
                "attempt": attempt,
                "duplicate": duplicate,
                "status_code": status_code,
                "error": error,
                "sent_at": sent_at,
                "time": self._clock.now(),
            }
        )
        self._on_change(message.job)
        for job_id, passed in self._parked:
            if job_id != message.job.id:
                passed.set()
        return ok
