"""Pull-sync activities (seed 004): plan a cycle, pull a batch of clients, record the cycle,
clean up.

A pull: GET `{client}/api/client/sync-data` through the guarded fetcher (client URLs must lie in
PULL_SYNC_ALLOWED_NETWORKS; one deadline for the whole request, a byte cap), validate the answer
strictly (any fault refuses the whole answer: nothing from it is stored), store the records
once each (committed), then POST `{client}/api/client/acknowledge` with exactly those ids. A
lost acknowledge loses nothing: the records come again at the next pull and are absorbed. Every
failure is the client's own: logged, counted on its row, and the batch goes on.

What a batch costs is what 1,000 clients every 30 s cost, so (measured; see bench/pull_sync.py):
a pull is two requests on a connection of its own (`OutboundFetcher.session()`, not httpx's
pool); the answers that arrive while a store runs are stored together in the next one (one
transaction, the records as one JSON document the database unpacks) and each client is
acknowledged only once that transaction committed; the batch's pulls are recorded at its end
in a few bulk statements. A database error while storing fails the batch: nothing from it was
acknowledged, and Temporal's retry pulls it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.gc_tuning import fewer_young_collections
from core.models import utcnow
from core.outbound import (
    OutboundFetcher,
    OutboundPolicy,
    OutboundRefused,
    OutboundSession,
    parse_networks,
)
from core.pull_contracts import (
    ACT_BATCH,
    ACT_CLEANUP,
    ACT_FINISH,
    ACT_PLAN,
    BatchResult,
    ClientResult,
    CycleRecord,
    PullBatch,
    PullMode,
    PullPlan,
)
from core.pull_models import PullClient, PullCycle
from core.pull_store import (
    PulledRecord,
    PullOutcome,
    cleanup,
    mark_healthy,
    record_cycle,
    record_pulls,
    store_answers,
)
from core.settings import Settings

log = logging.getLogger("autosync.pull_sync")

HEARTBEAT_SECONDS = 5.0
# Batches of one cycle running at once (each pulls `batch_concurrency` clients at a time).
PARALLEL_BATCHES = 4


@dataclass(frozen=True)
class PullConfig:
    timeout: float = 15.0
    max_records: int = 1000
    max_failures: int = 5
    batch_size: int = 100
    batch_concurrency: int = 50
    inactive_days: float = 7.0
    history_days: float = 7.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PullConfig:
        return cls(
            timeout=settings.pull_sync_timeout_seconds,
            max_records=settings.pull_sync_max_records,
            max_failures=settings.pull_sync_max_failures,
            batch_size=settings.pull_sync_batch_size,
            batch_concurrency=settings.pull_sync_batch_concurrency,
            inactive_days=settings.pull_sync_inactive_days,
            history_days=settings.pull_sync_history_days,
        )


def client_fetcher(settings: Settings) -> OutboundFetcher:
    """The fetcher for client URLs: PULL_SYNC_ALLOWED_NETWORKS instead of public-only."""
    return OutboundFetcher(
        OutboundPolicy(
            max_redirects=settings.outbound_max_redirects,
            connect_timeout=min(settings.outbound_connect_timeout_seconds,
                                settings.pull_sync_timeout_seconds),
            read_timeout=settings.pull_sync_timeout_seconds,
            max_bytes=settings.pull_sync_max_response_bytes,
            allowed_networks=parse_networks(settings.pull_sync_allowed_networks),
        ),
        max_connections=max(10, settings.pull_sync_batch_concurrency * PARALLEL_BATCHES),
    )  # fmt: skip


def plan_batches(ids: Sequence[str], max_size: int, lanes: int) -> list[list[str]]:
    """`ids` in order, in batches of at most `max_size`, of even sizes; when they take more
    than one round of `lanes` batches at once, in whole rounds. A last round of fewer batches
    than lanes ran on half the worker while the cycle waited for it (measured with
    bench/pull_sync.py: 10 batches of 100 in 4 lanes against 4 of 250, README "eighth run")."""
    if not ids:
        return []
    count = -(-len(ids) // max(1, max_size))
    if count > lanes:
        count = -(-count // lanes) * lanes
    size, extra = divmod(len(ids), count)
    batches: list[list[str]] = []
    start = 0
    for n in range(count):
        end = start + size + (1 if n < extra else 0)
        batches.append(list(ids[start:end]))
        start = end
    return batches


_JSON = {"Accept": "application/json"}
_JSON_BODY = {**_JSON, "Content-Type": "application/json"}


# --- what a client may answer ----------------------------------------------------------------


class BadAnswer(Exception):
    """The client's answer breaks the protocol: nothing from it is used."""


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=64)
    action: Literal["capture", "favorite", "remove"]
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: AwareDatetime


class _SyncData(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    records: list[_Record]
    pending: int | None = Field(default=None, ge=0)


class _Acknowledged(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    acknowledged: list[str]


class _Health(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    status: str
    pending: int | None = Field(default=None, ge=0)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_input=False)[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))


def parse_sync_data(
    body: bytes, *, user_id: str, max_records: int
) -> tuple[list[PulledRecord], int | None]:
    """The records of a sync-data answer and the pending count it reports; BadAnswer if
    anything in it is off (not JSON, wrong types, no ids, another user's, too many, twice).

    Answers are checked by a plain loop over orjson's parse first (a third of pydantic's CPU
    for the usual answer: this runs for every client every cycle); anything that loop does not
    recognise at once goes to the pydantic models, which decide and say what is wrong."""
    try:
        fast = _fast_records(orjson.loads(body))
    except orjson.JSONDecodeError:
        fast = None
    if fast is None:
        try:
            parsed = _SyncData.model_validate_json(body)
        except ValidationError as exc:
            if any(e.get("type") == "json_invalid" for e in exc.errors(include_input=False)):
                raise BadAnswer("sync-data is not valid JSON") from None
            raise BadAnswer(f"sync-data has the wrong shape ({_first_error(exc)})") from None
        fast = (
            [
                PulledRecord(r.id, r.user_id, r.action, r.payload, r.timestamp.astimezone(UTC))
                for r in parsed.records
            ],
            parsed.pending,
        )
    records, pending = fast
    if len(records) > max_records:
        raise BadAnswer(f"sync-data sent {len(records)} records, more than {max_records}")
    seen: set[str] = set()
    for record in records:
        if record.user_id != user_id:
            raise BadAnswer(f"record {record.id!r} is for user {record.user_id!r}, not {user_id!r}")
        if record.id in seen:
            raise BadAnswer(f"record {record.id!r} appears twice")
        seen.add(record.id)
    return records, pending


# RFC 3339 as clients send it; other ISO 8601 spellings go to pydantic, which decides.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)")
_ACTIONS = frozenset({"capture", "favorite", "remove"})


def _fast_records(data: Any) -> tuple[list[PulledRecord], int | None] | None:
    """The records of an answer that is plainly right (what `_SyncData` accepts in strict
    mode), or None: let pydantic look."""
    if type(data) is not dict:
        return None
    raw, pending = data.get("records"), data.get("pending")
    if type(raw) is not list or not (pending is None or (type(pending) is int and pending >= 0)):
        return None
    records: list[PulledRecord] = []
    for r in raw:
        if type(r) is not dict:
            return None
        rid, uid, action, stamp = r.get("id"), r.get("user_id"), r.get("action"), r.get("timestamp")
        payload = r.get("payload", {})
        if not (
            type(rid) is str and 0 < len(rid) <= 128 and type(uid) is str and 0 < len(uid) <= 64
            and action in _ACTIONS and type(payload) is dict
            and type(stamp) is str and _RFC3339.fullmatch(stamp)
        ):  # fmt: skip
            return None
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            return None
        if when.tzinfo is not UTC:
            when = when.astimezone(UTC)
            utc_text = ""
        elif (len(stamp) == 32 and stamp[26:] == "+00:00") or (
            len(stamp) == 27 and stamp[26] == "Z"
        ):
            utc_text = f"{stamp[:10]} {stamp[11:26]}"  # six digits of microseconds, in UTC
        else:
            utc_text = ""
        records.append(PulledRecord(rid, uid, action, payload, when, utc_text))
    return records, pending


def parse_acknowledged(body: bytes, sent: Sequence[str]) -> list[str]:
    try:
        acknowledged = _Acknowledged.model_validate_json(body).acknowledged
    except ValidationError as exc:
        raise BadAnswer(f"acknowledge answer is not valid ({_first_error(exc)})") from None
    unknown = set(acknowledged) - set(sent)
    if unknown:
        raise BadAnswer(f"acknowledge answered {len(unknown)} ids it was never sent")
    return acknowledged


# --- the activities --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    id: str
    url: str
    user_id: str


class _GroupStore:
    """Stores the answers of every batch running in this worker together: whatever has
    arrived while the last transaction ran goes into the next one (a group commit). Each
    `store` returns once its records are committed, so a client is acknowledged only after
    that; a failed transaction fails every answer in it (their batches are retried, the upsert
    absorbs what was stored).

    One writer for the process, not one per batch: SQLite has one write lock, so writers of
    concurrent batches could only take turns at it. (Measured: less CPU in a harness running
    a cycle's batches outside Temporal, 3.8-4.4 against 4.5-5.3 CPU-s; no measurable change
    of the cycle's lag in bench/pull_sync.py.)"""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.loop = asyncio.get_running_loop()
        self._sessions = sessions
        self._waiting: list[tuple[str, list[PulledRecord], asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, client_id: str, records: list[PulledRecord]) -> int:
        stored: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((client_id, records, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await stored

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            answers: dict[str, list[PulledRecord]] = {}
            for client_id, records, _ in group:  # one client twice: a sync-all during a cycle
                answers.setdefault(client_id, []).extend(records)
            try:
                async with self._sessions() as session, session.begin():
                    new = await store_answers(session, answers)
            except Exception as exc:
                for _, _, stored in group:
                    if not stored.done():
                        stored.set_exception(exc)
                continue
            except BaseException:  # cancelled (the worker stops): nobody waits forever
                for _, _, stored in group + self._waiting:
                    stored.cancel()
                self._waiting = []
                raise
            for client_id, _, stored in group:
                if not stored.done():
                    stored.set_result(new.pop(client_id, 0))  # counted once per client


class PullSyncActivities:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        fetcher: OutboundFetcher,
        config: PullConfig,
    ) -> None:
        self._sessions = sessions
        self._fetcher = fetcher
        self._config = config
        self._group_store: _GroupStore | None = None

    def _store(self) -> _GroupStore:
        """The worker's one group store (made again on another event loop, as in tests)."""
        store = self._group_store
        if store is None or store.loop is not asyncio.get_running_loop():
            store = self._group_store = _GroupStore(self._sessions)
        return store

    @activity.defn(name=ACT_PLAN)
    async def plan(self, mode: str) -> PullPlan:
        """The clients a cycle visits (active ones; inactive ones for health), in batches."""
        active = PullMode(mode) is not PullMode.HEALTH
        async with self._sessions() as session:
            ids = list(
                (
                    await session.scalars(
                        select(PullClient.id)
                        .where(PullClient.active.is_(active))
                        .order_by(PullClient.id)
                    )
                ).all()
            )
        return PullPlan(
            batches=plan_batches(ids, self._config.batch_size, PARALLEL_BATCHES),
            parallel_batches=PARALLEL_BATCHES,
        )

    @activity.defn(name=ACT_BATCH)
    async def pull_batch(self, batch: PullBatch) -> BatchResult:
        """Pull (or probe) each client of the batch, a bounded number at a time; then record
        every pull of the batch in one transaction."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(PullClient.id, PullClient.url, PullClient.user_id).where(
                        PullClient.id.in_(batch.client_ids)
                    )
                )
            ).all()
        targets = {row.id: _Target(row.id, row.url, row.user_id) for row in rows}
        gate = asyncio.Semaphore(self._config.batch_concurrency)
        mode = PullMode(batch.mode)
        store = self._store()

        async def one(client_id: str) -> ClientResult | PullOutcome:
            target = targets.get(client_id)
            if target is None:  # unregistered since the plan
                return ClientResult(client_id=client_id, ok=True, skipped=True)
            async with gate:
                if mode is PullMode.HEALTH:
                    return await self._probe(target)
                return await self._pull(target, mode, store)

        async with _heartbeating():
            with fewer_young_collections():  # see core/gc_tuning.py
                pulls = [asyncio.ensure_future(one(c)) for c in batch.client_ids]
                try:
                    done = await asyncio.gather(*pulls)
                finally:
                    # A failed store fails the batch: the pulls still under way stop here. Records
                    # of theirs already handed to the store may still be written; unacknowledged,
                    # they come again at the next pull and the upsert absorbs them.
                    for pull in pulls:
                        pull.cancel()
                outcomes = [o for o in done if isinstance(o, PullOutcome)]
                became: dict[str, str] = {}
                if outcomes:
                    async with self._sessions() as session, session.begin():
                        became = await record_pulls(
                            session, outcomes, cycle_id=batch.cycle_id, mode=mode.value,
                            max_failures=self._config.max_failures,
                        )  # fmt: skip
        return BatchResult(
            results=[
                o if isinstance(o, ClientResult) else ClientResult(
                    client_id=o.client_id, ok=o.ok, fetched=o.fetched, stored=o.stored,
                    acknowledged=o.acknowledged, error=_short(o.error),
                    became=became.get(o.client_id),
                )
                for o in done
            ]
        )  # fmt: skip

    @activity.defn(name=ACT_FINISH)
    async def finish_cycle(self, cycle: CycleRecord) -> float:
        """Keep the cycle's figures; returns its lag (now minus when it was due)."""
        now = utcnow()
        due = cycle.scheduled_at or cycle.started_at or now
        if due.tzinfo is None:
            due = due.replace(tzinfo=UTC)
        started = cycle.started_at or now
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        lag = max(0.0, (now - due).total_seconds())
        async with self._sessions() as session, session.begin():
            await record_cycle(
                session,
                PullCycle(
                    id=cycle.cycle_id, mode=cycle.mode, scheduled_at=cycle.scheduled_at and due,
                    started_at=started, finished_at=now, clients=cycle.clients, ok=cycle.ok,
                    failed=cycle.failed, stored=cycle.stored, lag_seconds=lag,
                ),
            )  # fmt: skip
        return lag

    @activity.defn(name=ACT_CLEANUP)
    async def cleanup(self) -> dict[str, int]:
        """Remove long-inactive clients and old pull bookkeeping."""
        async with self._sessions() as session, session.begin():
            removed = await cleanup(
                session,
                inactive_days=self._config.inactive_days,
                history_days=self._config.history_days,
            )
        log.info("pull-sync cleanup: %s", removed)
        return removed

    # --- one client --------------------------------------------------------------------------

    async def _pull(
        self, target: _Target, mode: PullMode, store: _GroupStore
    ) -> ClientResult | PullOutcome:
        """One client's pull (its outcome is recorded with the batch's), or skipped."""
        async with self._fetcher.session() as http:
            call = _Calls(http, target.url, self._config.timeout)
            if mode is PullMode.RECENT:
                try:
                    health = _Health.model_validate_json(await call("/api/client/health"))
                except (BadAnswer, ValidationError, OutboundRefused, httpx.HTTPError, TimeoutError):
                    health = None  # it will say what is wrong at the pull itself
                if health is not None and health.pending == 0:
                    return ClientResult(client_id=target.id, ok=True, skipped=True)
            outcome = await self._fetch_store_acknowledge(target, call, store)
        if not outcome.ok:
            log.warning("pull of client %s (%s) failed: %s", target.id, target.url, outcome.error)
        return outcome

    async def _fetch_store_acknowledge(
        self, target: _Target, call: _Calls, store: _GroupStore
    ) -> PullOutcome:
        try:
            body = await call(f"/api/client/sync-data?limit={self._config.max_records}")
            records, pending = parse_sync_data(
                body, user_id=target.user_id, max_records=self._config.max_records
            )
        except Exception as exc:
            return PullOutcome(target.id, ok=False, error=_reason("sync-data", exc))
        if not records:
            return PullOutcome(target.id, ok=True, pending=pending)
        stored = await store.store(target.id, records)  # committed when it returns
        ids = [record.id for record in records]
        try:
            acknowledged = parse_acknowledged(
                await call("/api/client/acknowledge", method="POST", body={"ids": ids}), ids
            )
        except Exception as exc:
            # Stored and committed: the next pull brings them again and the upsert absorbs them.
            return PullOutcome(
                target.id, ok=False, fetched=len(records), stored=stored, pending=pending,
                error=_reason("acknowledge", exc),
            )  # fmt: skip
        left = None if pending is None else max(0, pending - len(acknowledged))
        return PullOutcome(
            target.id, ok=True, fetched=len(records), stored=stored,
            acknowledged=len(acknowledged), pending=left,
        )  # fmt: skip

    async def _probe(self, target: _Target) -> ClientResult:
        """An inactive client's health: answering `status: ok` makes it active again."""
        try:
            async with self._fetcher.session() as http:
                call = _Calls(http, target.url, self._config.timeout)
                health = _Health.model_validate_json(await call("/api/client/health"))
            healthy, error = health.status == "ok", None
        except Exception as exc:
            healthy, error = False, _reason("health", exc)
        async with self._sessions() as session, session.begin():
            reactivated = await mark_healthy(session, target.id, healthy)
        return ClientResult(
            client_id=target.id, ok=healthy, skipped=not reactivated, error=_short(error),
            became="active" if reactivated else None,
        )  # fmt: skip


class _Calls:
    """One client's requests during one pull: on a connection of their own, each within the
    pull timeout and the byte cap."""

    def __init__(self, http: OutboundSession, url: str, timeout: float) -> None:
        self._http = http
        self._base = url.rstrip("/")
        self._timeout = timeout

    async def __call__(self, path: str, *, method: str = "GET", body: Any = None) -> bytes:
        """The body of a 2xx answer; raises otherwise."""
        content = orjson.dumps(body) if body is not None else None
        async with asyncio.timeout(self._timeout):
            status, answer = await self._http.read(
                self._base + path, method=method, content=content,
                headers=_JSON_BODY if content is not None else _JSON,
            )  # fmt: skip
        if not 200 <= status < 300:
            raise BadAnswer(f"answered HTTP {status}")
        return answer


def _short(error: str | None) -> str | None:
    """An error as a cycle's result carries it (the client row keeps it whole)."""
    return error[:300] if error else None


def _reason(step: str, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"{step}: no complete answer within the timeout"
    if isinstance(exc, BadAnswer | OutboundRefused):
        return f"{step}: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return f"{step}: {type(exc).__name__} {exc}".strip()
    return f"{step}: {type(exc).__name__}: {exc}"


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while a batch runs, so a dead worker's batch is retried within the timeout."""
    if not activity.in_activity():
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
