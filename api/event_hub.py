"""Fan-out of the events outbox to the live streams of this API process.

One loop per process reads new events (`id > last seen`) and hands each to the subscribers
whose topics match. It wakes on PostgreSQL `NOTIFY` (sent by the writer's transaction on
commit); on SQLite, which has no notifications, it polls every `poll_interval` seconds. A
subscriber that falls too far behind is dropped: its client reconnects with the last id it
saw and catches up from the table, so nothing is lost either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.events import NOTIFY_CHANNEL
from core.models import Event, utcnow

log = logging.getLogger(__name__)

BATCH = 500
QUEUE_LIMIT = 5000  # events buffered per subscriber before it is dropped
STOP_RECANCEL_SECONDS = 1.0  # `stop` cancels a loop again if it is still running after this


@dataclass(frozen=True)
class StreamEvent:
    id: int
    topic: str
    type: str
    payload: dict[str, Any]
    at: datetime

    @functools.cached_property
    def text(self) -> str:
        """The event as JSON, made once however many subscribers it goes to."""
        return json.dumps(self.as_json())

    @classmethod
    def of(cls, row: Event) -> StreamEvent:
        return cls(row.id, row.topic, row.type, row.payload, row.created_at)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "type": self.type,
            "payload": self.payload,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class TopicFilter:
    """Exact topics, plus prefixes for topics ending in `*` (`sync-run:*`)."""

    exact: frozenset[str]
    prefixes: tuple[str, ...] = ()

    @classmethod
    def of(cls, topics: Iterable[str]) -> TopicFilter:
        exact = {t for t in topics if not t.endswith("*")}
        prefixes = tuple(sorted(t[:-1] for t in topics if t.endswith("*")))
        return cls(frozenset(exact), prefixes)

    def matches(self, topic: str) -> bool:
        return topic in self.exact or topic.startswith(self.prefixes)

    def where(self) -> Any:
        clauses: list[Any] = [Event.topic.in_(self.exact)] if self.exact else []
        clauses += [Event.topic.startswith(prefix, autoescape=True) for prefix in self.prefixes]
        return or_(*clauses)


class Dropped(Exception):
    """The subscriber fell behind and was dropped; reconnect with the last id seen."""


class End(enum.Enum):
    """Why a subscriber's queue says no more events are coming."""

    DROPPED = "dropped"  # it fell behind
    CLOSING = "closing"  # this API process is shutting down


@dataclass(eq=False)
class Subscription:
    topics: TopicFilter
    queue: asyncio.Queue[StreamEvent | End] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )


class EventHub:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        listen_dsn: str | None,
        poll_interval: float,
    ) -> None:
        """`listen_dsn`: a libpq DSN to LISTEN on (PostgreSQL), or None to poll (SQLite)."""
        self._sessions = sessions
        self._listen_dsn = listen_dsn
        self._poll_interval = poll_interval
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._last_id = 0
        self._closing = False
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        # Called with each event's commit-to-dispatch seconds (the /metrics histogram).
        self.lag_observer: Callable[[float], None] | None = None

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    @property
    def last_id(self) -> int:
        return self._last_id

    @property
    def closing(self) -> bool:
        return self._closing

    async def start(self) -> None:
        async with self._sessions() as session:
            self._last_id = int(await session.scalar(select(func.max(Event.id))) or 0)
        self._tasks.append(asyncio.create_task(self._dispatch_loop(), name="event-hub"))
        if self._listen_dsn is not None:
            self._tasks.append(asyncio.create_task(self._listen_loop(), name="event-listen"))

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        # Cancelled again until they end: a driver that turns a cancel into an error (an old
        # SQLAlchemy/psycopg pair did, mid-query) would otherwise leave a loop running on after
        # its one cancel, and `stop` waiting on it forever (CI's lowest-versions run hung so).
        while tasks:
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=STOP_RECANCEL_SECONDS)
            tasks = list(pending)
        self.close()

    def close(self) -> None:
        """End every stream, and every stream opened from now on, as finished (not dropped).

        Called when the server is told to stop: its clients reconnect to another process with
        the last id they saw, and the server isn't held up by responses that never end.
        """
        self._closing = True
        for sub in list(self._subscribers):
            self._end(sub, End.CLOSING)

    # --- subscribers -----------------------------------------------------------------------

    async def stream(self, topics: TopicFilter, after: int | None) -> AsyncIterator[StreamEvent]:
        """Events of `topics` after id `after` (or from now), in id order, each once.

        Raises `Dropped` when the subscriber can't keep up; ends when the hub closes.
        """
        async for batch in self.batches(topics, after):
            for event in batch:
                yield event

    async def batches(
        self, topics: TopicFilter, after: int | None
    ) -> AsyncIterator[list[StreamEvent]]:
        """`stream`, a batch at a time: every event already waiting when the subscriber is
        ready, so a subscriber that falls behind catches up in a few large writes instead of
        many small ones (its batches grow with the load; idle, each holds one event)."""
        if self._closing:
            return
        sub = Subscription(topics)
        # No await between the two lines: every event past `live_from` reaches the queue.
        live_from = self._last_id
        self._subscribers.add(sub)
        try:
            last = live_from if after is None else after
            while last < live_from and not self._closing:  # catch up, then go live
                backlog = await self.read(topics, after=last, until=live_from)
                if not backlog:
                    break
                yield backlog
                last = backlog[-1].id
            last = max(last, live_from)
            queue = sub.queue
            while True:
                waiting = [await queue.get()]
                while len(waiting) < BATCH and not queue.empty():
                    waiting.append(queue.get_nowait())
                batch: list[StreamEvent] = []
                for live in waiting:
                    if live is End.DROPPED:
                        raise Dropped("too far behind")
                    if live is End.CLOSING:
                        if batch:
                            yield batch
                        return
                    if live.id > last:
                        last = live.id
                        batch.append(live)
                if batch:
                    yield batch
        finally:
            self._subscribers.discard(sub)

    async def read(self, topics: TopicFilter, *, after: int, until: int) -> list[StreamEvent]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Event)
                .where(Event.id > after, Event.id <= until, topics.where())
                .order_by(Event.id)
                .limit(BATCH)
            )
            return [StreamEvent.of(row) for row in rows]

    def _drop(self, sub: Subscription) -> None:
        self._end(sub, End.DROPPED)

    def _end(self, sub: Subscription, why: End) -> None:
        self._subscribers.discard(sub)
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(why)

    # --- loops -----------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def _dispatch_loop(self) -> None:
        # With LISTEN, a slow safety poll covers a lost connection's gap; without, a fast one.
        interval = self._poll_interval * (20 if self._listen_dsn else 1)
        while not self._stopping:
            # Not `asyncio.wait_for`: on Python 3.11 it returns the finished wait when a cancel
            # arrives in the same turn as a wake, and the loop would outlive `stop`.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._dispatch_new()
            except Exception:
                if self._stopping:
                    return
                log.exception("reading new events failed; retrying")
                await asyncio.sleep(1.0)

    async def _dispatch_new(self) -> None:
        while True:
            async with self._sessions() as session:
                rows = list(
                    await session.scalars(
                        select(Event)
                        .where(Event.id > self._last_id)
                        .order_by(Event.id)
                        .limit(BATCH)
                    )
                )
            now = utcnow()
            for row in rows:
                fresh = StreamEvent.of(row)
                self._last_id = fresh.id
                if self.lag_observer is not None:
                    self.lag_observer((now - fresh.at).total_seconds())
                for sub in list(self._subscribers):
                    if sub.topics.matches(fresh.topic):
                        try:
                            sub.queue.put_nowait(fresh)
                        except asyncio.QueueFull:
                            self._drop(sub)
            if len(rows) < BATCH:
                return

    async def _listen_loop(self) -> None:
        import psycopg  # PostgreSQL only

        assert self._listen_dsn is not None
        while not self._stopping:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._listen_dsn, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.wake()  # whatever was committed while not listening
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                log.warning("event LISTEN connection lost (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
