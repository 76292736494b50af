"""`Client` (blocking) and `AsyncClient` (asyncio): the API's calls as typed methods.

Both send the calls of `autosync_client.calls` and nothing else, with the API key in the
`Authorization: Bearer` header (never in a URL). An error answer raises `ApiError` with the
API's code and message; no answer raises `ApiUnreachable`.

    with Client("http://localhost:8000", "my-key") as api:
        job = api.create_job("generation", {"prompt": "a red fox"})
        for update in api.watch_job(job.id):
            print(update.status)

`url` and `api_key` default to the AUTOSYNC_URL and AUTOSYNC_API_KEY environment variables.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from autosync_client import calls
from autosync_client.calls import Call
from autosync_client.errors import ApiError, ApiUnreachable, AutosyncError
from autosync_client.models import (
    ApiKey,
    ApiKeyCreated,
    ApiKeyList,
    Batch,
    BatchStarted,
    Event,
    Job,
    JobPage,
    JobUpdate,
    LogLine,
    LogPage,
    Me,
    RunUpdate,
    Schedule,
    SyncRun,
    SyncRunPage,
    Usage,
)
from autosync_client.stream import (
    MAX_STREAM_FAILURES,
    STREAM_READ_TIMEOUT,
    JobWatch,
    RunWatch,
    SseParser,
    stream_params,
)

T = TypeVar("T")
DEFAULT_URL = "http://localhost:8000"
USER_AGENT = "autosync-client/0.1"
# Status codes that say "this server has no stream for you here": poll instead, don't retry.
NO_STREAM = frozenset({404, 405, 406, 501})


def _config(url: str | None, api_key: str | None) -> tuple[str, str]:
    url = url or os.environ.get("AUTOSYNC_URL") or DEFAULT_URL
    api_key = api_key or os.environ.get("AUTOSYNC_API_KEY")
    if not api_key:
        raise AutosyncError("no API key: pass api_key (--api-key) or set AUTOSYNC_API_KEY")
    return url.rstrip("/"), api_key


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}


def _answer(call: Call[T], response: httpx.Response) -> T:
    if response.status_code >= 400:
        raise ApiError.from_response(response)
    return call.parse(response)


class _StreamBroke(Exception):
    """The stream ended or failed: reconnect, or poll."""


class Client:
    """The API, blocking. Use as a context manager, or `close()` it."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, api_key = _config(url, api_key)
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call[T]) -> T:
        try:
            response = self._http.request(
                call.method, call.path, params=call.query, json=call.json,
                headers=call.headers,
            )  # fmt: skip
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.url, exc) from exc
        return _answer(call, response)

    # --- calls (see autosync_client.calls for what each sends) ---------------------------------

    def me(self) -> Me:
        return self.send(calls.me())

    def latest_event_id(self) -> dict[str, int]:
        return self.send(calls.latest_event_id())

    def create_job(
        self,
        kind: str,
        input: dict[str, Any],
        *,
        provider: str | None = None,
        model: str | None = None,
        project_id: str | None = None,
        node_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        return self.send(calls.create_job(kind, input, provider=provider, model=model,
                                          project_id=project_id, node_id=node_id,
                                          idempotency_key=idempotency_key))  # fmt: skip

    def get_job(self, job_id: str) -> Job:
        return self.send(calls.get_job(job_id))

    def list_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        project_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        return self.send(calls.list_jobs(status=status, kind=kind, project_id=project_id,
                                         limit=limit, cursor=cursor))  # fmt: skip

    def cancel_job(self, job_id: str, *, reason: str | None = None) -> Job:
        return self.send(calls.cancel_job(job_id, reason=reason))

    def rerun_job(self, job_id: str, *, input: dict[str, Any] | None = None) -> Job:
        return self.send(calls.rerun_job(job_id, input=input))

    def cancel_jobs(
        self, *, ids: list[str] | None = None, filter: dict[str, Any] | None = None
    ) -> BatchStarted:
        return self.send(calls.cancel_jobs(ids=ids, filter=filter))

    def rerun_jobs(
        self, *, ids: list[str] | None = None, filter: dict[str, Any] | None = None
    ) -> BatchStarted:
        return self.send(calls.rerun_jobs(ids=ids, filter=filter))

    def get_batch(self, batch_id: str) -> Batch:
        return self.send(calls.get_batch(batch_id))

    def usage(
        self, *, group_by: str | None = None, from_: str | None = None, to: str | None = None
    ) -> Usage:
        return self.send(calls.usage(group_by=group_by, from_=from_, to=to))

    def start_sync_run(
        self,
        company_id: str,
        *,
        mode: str = "incremental",
        month: str | None = None,
        start_date: date | None = None,
        end_date: date | None = None,
        modules: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> SyncRun:
        return self.send(calls.start_sync_run(company_id, mode=mode, month=month,
                                              start_date=start_date, end_date=end_date,
                                              modules=modules,
                                              idempotency_key=idempotency_key))  # fmt: skip

    def get_sync_run(self, run_id: str) -> SyncRun:
        return self.send(calls.get_sync_run(run_id))

    def list_sync_runs(
        self,
        *,
        company_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SyncRunPage:
        return self.send(calls.list_sync_runs(company_id=company_id, status=status, limit=limit,
                                              cursor=cursor))  # fmt: skip

    def sync_run_logs(
        self,
        run_id: str,
        *,
        level: str | None = None,
        module: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> LogPage:
        return self.send(calls.sync_run_logs(run_id, level=level, module=module, after=after,
                                             limit=limit))  # fmt: skip

    def cancel_sync_run(self, run_id: str) -> SyncRun:
        return self.send(calls.cancel_sync_run(run_id))

    def list_schedules(self) -> list[Schedule]:
        return self.send(calls.list_schedules())

    def get_schedule(self, company_id: str) -> Schedule:
        return self.send(calls.get_schedule(company_id))

    def create_schedule(
        self, company_id: str, every_minutes: int, *, paused: bool = False
    ) -> Schedule:
        return self.send(calls.create_schedule(company_id, every_minutes, paused=paused))

    def retime_schedule(self, company_id: str, every_minutes: int) -> Schedule:
        return self.send(calls.retime_schedule(company_id, every_minutes))

    def pause_schedule(self, company_id: str) -> Schedule:
        return self.send(calls.pause_schedule(company_id))

    def resume_schedule(self, company_id: str) -> Schedule:
        return self.send(calls.resume_schedule(company_id))

    def trigger_schedule(self, company_id: str) -> Schedule:
        return self.send(calls.trigger_schedule(company_id))

    def delete_schedule(self, company_id: str) -> None:
        return self.send(calls.delete_schedule(company_id))

    def list_api_keys(self, *, user_id: str | None = None) -> ApiKeyList:
        return self.send(calls.list_api_keys(user_id=user_id))

    def create_api_key(
        self, user_id: str, name: str, *, admin: bool | None = None
    ) -> ApiKeyCreated:
        return self.send(calls.create_api_key(user_id, name, admin=admin))

    def get_api_key(self, api_key_id: str) -> ApiKey:
        return self.send(calls.get_api_key(api_key_id))

    def revoke_api_key(self, api_key_id: str) -> ApiKey:
        return self.send(calls.revoke_api_key(api_key_id))

    # --- paging -------------------------------------------------------------------------------

    def iter_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        project_id: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Every job the filters match, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = self.list_jobs(status=status, kind=kind, project_id=project_id,
                                  limit=page_size, cursor=cursor)  # fmt: skip
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_sync_runs(
        self, *, company_id: str | None = None, status: str | None = None, page_size: int = 100
    ) -> Iterator[SyncRun]:
        cursor: str | None = None
        while True:
            page = self.list_sync_runs(company_id=company_id, status=status, limit=page_size,
                                       cursor=cursor)  # fmt: skip
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def iter_logs(
        self,
        run_id: str,
        *,
        level: str | None = None,
        module: str | None = None,
        after: int = 0,
        page_size: int = 500,
    ) -> Iterator[LogLine]:
        """A run's log lines, oldest first, from `after` on."""
        while True:
            page = self.sync_run_logs(run_id, level=level, module=module, after=after,
                                      limit=page_size)  # fmt: skip
            yield from page.items
            if page.next_after is None:
                return
            after = page.next_after

    # --- live stream --------------------------------------------------------------------------

    def events(self, topics: list[str], *, after: int | None = None) -> Iterator[Event]:
        """The live stream's events of `topics` after event id `after`, until it ends (the
        server going away) or the caller stops. `ApiError` if it can't be opened."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
        try:
            with self._http.stream(
                "GET", "/v1/events", params=stream_params(topics, after),
                headers={"Accept": "text/event-stream"}, timeout=timeout,
            ) as response:  # fmt: skip
                if response.status_code >= 400:
                    response.read()
                    raise ApiError.from_response(response)
                parser = SseParser()
                for line in response.iter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.url, exc) from exc

    def _follow(self, topics: list[str], after: int) -> Iterator[Event]:
        """Events after `after`, reconnecting from the last one seen; ends (for polling) when
        the server has no stream or it breaks MAX_STREAM_FAILURES times in a row."""
        failures = 0
        while failures < MAX_STREAM_FAILURES:
            try:
                for event in self.events(topics, after=after):
                    failures = 0
                    after = event.id
                    yield event
                failures += 1  # ended: the server is going away
            except ApiError as exc:
                if exc.status_code in NO_STREAM or exc.status_code < 500:
                    return
                failures += 1
            except ApiUnreachable:
                failures += 1

    def watch_job(
        self, job_id: str, *, poll_interval: float = 1.0, stream: bool = True
    ) -> Iterator[JobUpdate]:
        """The job's state now, then each change until it ends (succeeded, failed, canceled):
        from the live stream, or by polling every `poll_interval` s without one."""
        watch = JobWatch(job_id)
        after = self._stream_start() if stream else None
        job = self.get_job(job_id)
        if (update := watch.read(job)) is not None:
            yield update
        if after is not None and not watch.done:
            for event in self._follow([f"user:{job.user_id}"], after):
                if (update := watch.event(event)) is not None:
                    yield update
                if watch.done:
                    return
        while not watch.done:  # no stream (or it broke): poll
            if (update := watch.read(self.get_job(job_id))) is not None:
                yield update
            if not watch.done:
                time.sleep(poll_interval)

    def watch_run(
        self, run_id: str, *, poll_interval: float = 1.0, stream: bool = True
    ) -> Iterator[RunUpdate]:
        """A sync run's status and module progress now, then each change and log line until
        it ends (DONE, FAILED, CANCELED); polls without a live stream."""
        watch = RunWatch(run_id)
        after = self._stream_start() if stream else None
        run = self.get_sync_run(run_id)
        watch.last_log_id = max((line.id or 0 for line in run.recent_logs), default=0)
        yield from watch.read(run)
        if after is not None and not watch.done:
            for event in self._follow([f"sync-run:{run_id}"], after):
                yield from watch.event(event)
                if watch.done:
                    return
        while not watch.done:
            yield from watch.logs(list(self.iter_logs(run_id, after=watch.last_log_id)))
            yield from watch.read(self.get_sync_run(run_id))
            if not watch.done:
                time.sleep(poll_interval)

    def _stream_start(self) -> int | None:
        """The event id to stream after (None: the server has no stream: poll)."""
        try:
            return self.latest_event_id()["id"]
        except ApiError as exc:
            if exc.status_code in NO_STREAM:
                return None
            raise


class AsyncClient:
    """The API, on asyncio. `async with AsyncClient(...) as api:`, or `await aclose()`."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, api_key = _config(url, api_key)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call[T]) -> T:
        try:
            response = await self._http.request(
                call.method, call.path, params=call.query, json=call.json,
                headers=call.headers,
            )  # fmt: skip
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.url, exc) from exc
        return _answer(call, response)

    # --- calls --------------------------------------------------------------------------------

    async def me(self) -> Me:
        return await self.send(calls.me())

    async def latest_event_id(self) -> dict[str, int]:
        return await self.send(calls.latest_event_id())

    async def create_job(
        self,
        kind: str,
        input: dict[str, Any],
        *,
        provider: str | None = None,
        model: str | None = None,
        project_id: str | None = None,
        node_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        return await self.send(calls.create_job(kind, input, provider=provider, model=model,
                                                project_id=project_id, node_id=node_id,
                                                idempotency_key=idempotency_key))  # fmt: skip

    async def get_job(self, job_id: str) -> Job:
        return await self.send(calls.get_job(job_id))

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        project_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        return await self.send(calls.list_jobs(status=status, kind=kind, project_id=project_id,
                                               limit=limit, cursor=cursor))  # fmt: skip

    async def cancel_job(self, job_id: str, *, reason: str | None = None) -> Job:
        return await self.send(calls.cancel_job(job_id, reason=reason))

    async def rerun_job(self, job_id: str, *, input: dict[str, Any] | None = None) -> Job:
        return await self.send(calls.rerun_job(job_id, input=input))

    async def cancel_jobs(
        self, *, ids: list[str] | None = None, filter: dict[str, Any] | None = None
    ) -> BatchStarted:
        return await self.send(calls.cancel_jobs(ids=ids, filter=filter))

    async def rerun_jobs(
        self, *, ids: list[str] | None = None, filter: dict[str, Any] | None = None
    ) -> BatchStarted:
        return await self.send(calls.rerun_jobs(ids=ids, filter=filter))

    async def get_batch(self, batch_id: str) -> Batch:
        return await self.send(calls.get_batch(batch_id))

    async def usage(
        self, *, group_by: str | None = None, from_: str | None = None, to: str | None = None
    ) -> Usage:
        return await self.send(calls.usage(group_by=group_by, from_=from_, to=to))

    async def start_sync_run(
        self,
        company_id: str,
        *,
        mode: str = "incremental",
        month: str | None = None,
        start_date: date | None = None,
        end_date: date | None = None,
        modules: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> SyncRun:
        return await self.send(calls.start_sync_run(company_id, mode=mode, month=month,
                                                    start_date=start_date, end_date=end_date,
                                                    modules=modules,
                                                    idempotency_key=idempotency_key))  # fmt: skip

    async def get_sync_run(self, run_id: str) -> SyncRun:
        return await self.send(calls.get_sync_run(run_id))

    async def list_sync_runs(
        self,
        *,
        company_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SyncRunPage:
        return await self.send(calls.list_sync_runs(company_id=company_id, status=status,
                                                    limit=limit, cursor=cursor))  # fmt: skip

    async def sync_run_logs(
        self,
        run_id: str,
        *,
        level: str | None = None,
        module: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> LogPage:
        return await self.send(calls.sync_run_logs(run_id, level=level, module=module,
                                                   after=after, limit=limit))  # fmt: skip

    async def cancel_sync_run(self, run_id: str) -> SyncRun:
        return await self.send(calls.cancel_sync_run(run_id))

    async def list_schedules(self) -> list[Schedule]:
        return await self.send(calls.list_schedules())

    async def get_schedule(self, company_id: str) -> Schedule:
        return await self.send(calls.get_schedule(company_id))

    async def create_schedule(
        self, company_id: str, every_minutes: int, *, paused: bool = False
    ) -> Schedule:
        return await self.send(calls.create_schedule(company_id, every_minutes, paused=paused))

    async def retime_schedule(self, company_id: str, every_minutes: int) -> Schedule:
        return await self.send(calls.retime_schedule(company_id, every_minutes))

    async def pause_schedule(self, company_id: str) -> Schedule:
        return await self.send(calls.pause_schedule(company_id))

    async def resume_schedule(self, company_id: str) -> Schedule:
        return await self.send(calls.resume_schedule(company_id))

    async def trigger_schedule(self, company_id: str) -> Schedule:
        return await self.send(calls.trigger_schedule(company_id))

    async def delete_schedule(self, company_id: str) -> None:
        return await self.send(calls.delete_schedule(company_id))

    async def list_api_keys(self, *, user_id: str | None = None) -> ApiKeyList:
        return await self.send(calls.list_api_keys(user_id=user_id))

    async def create_api_key(
        self, user_id: str, name: str, *, admin: bool | None = None
    ) -> ApiKeyCreated:
        return await self.send(calls.create_api_key(user_id, name, admin=admin))

    async def get_api_key(self, api_key_id: str) -> ApiKey:
        return await self.send(calls.get_api_key(api_key_id))

    async def revoke_api_key(self, api_key_id: str) -> ApiKey:
        return await self.send(calls.revoke_api_key(api_key_id))

    # --- paging -------------------------------------------------------------------------------

    async def iter_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        project_id: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Job]:
        """Every job the filters match, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_jobs(status=status, kind=kind, project_id=project_id,
                                        limit=page_size, cursor=cursor)  # fmt: skip
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def iter_sync_runs(
        self, *, company_id: str | None = None, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[SyncRun]:
        cursor: str | None = None
        while True:
            page = await self.list_sync_runs(company_id=company_id, status=status,
                                             limit=page_size, cursor=cursor)  # fmt: skip
            for run in page.items:
                yield run
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def iter_logs(
        self,
        run_id: str,
        *,
        level: str | None = None,
        module: str | None = None,
        after: int = 0,
        page_size: int = 500,
    ) -> AsyncIterator[LogLine]:
        while True:
            page = await self.sync_run_logs(run_id, level=level, module=module, after=after,
                                            limit=page_size)  # fmt: skip
            for line in page.items:
                yield line
            if page.next_after is None:
                return
            after = page.next_after

    # --- live stream --------------------------------------------------------------------------

    async def events(self, topics: list[str], *, after: int | None = None) -> AsyncIterator[Event]:
        """As `Client.events`."""
        timeout = httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT)
        try:
            async with self._http.stream(
                "GET", "/v1/events", params=stream_params(topics, after),
                headers={"Accept": "text/event-stream"}, timeout=timeout,
            ) as response:  # fmt: skip
                if response.status_code >= 400:
                    await response.aread()
                    raise ApiError.from_response(response)
                parser = SseParser()
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.url, exc) from exc

    async def _follow(self, topics: list[str], after: int) -> AsyncIterator[Event]:
        failures = 0
        while failures < MAX_STREAM_FAILURES:
            try:
                async for event in self.events(topics, after=after):
                    failures = 0
                    after = event.id
                    yield event
                failures += 1
            except ApiError as exc:
                if exc.status_code in NO_STREAM or exc.status_code < 500:
                    return
                failures += 1
            except ApiUnreachable:
                failures += 1

    async def watch_job(
        self, job_id: str, *, poll_interval: float = 1.0, stream: bool = True
    ) -> AsyncIterator[JobUpdate]:
        """As `Client.watch_job`."""
        watch = JobWatch(job_id)
        after = await self._stream_start() if stream else None
        job = await self.get_job(job_id)
        if (update := watch.read(job)) is not None:
            yield update
        if after is not None and not watch.done:
            events = self._follow([f"user:{job.user_id}"], after)
            try:
                async for event in events:
                    if (update := watch.event(event)) is not None:
                        yield update
                    if watch.done:
                        return
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        while not watch.done:
            if (update := watch.read(await self.get_job(job_id))) is not None:
                yield update
            if not watch.done:
                await asyncio.sleep(poll_interval)

    async def watch_run(
        self, run_id: str, *, poll_interval: float = 1.0, stream: bool = True
    ) -> AsyncIterator[RunUpdate]:
        """As `Client.watch_run`."""
        watch = RunWatch(run_id)
        after = await self._stream_start() if stream else None
        run = await self.get_sync_run(run_id)
        watch.last_log_id = max((line.id or 0 for line in run.recent_logs), default=0)
        for update in watch.read(run):
            yield update
        if after is not None and not watch.done:
            events = self._follow([f"sync-run:{run_id}"], after)
            try:
                async for event in events:
                    for update in watch.event(event):
                        yield update
                    if watch.done:
                        return
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        while not watch.done:
            lines = [line async for line in self.iter_logs(run_id, after=watch.last_log_id)]
            for update in watch.logs(lines) + watch.read(await self.get_sync_run(run_id)):
                yield update
            if not watch.done:
                await asyncio.sleep(poll_interval)

    async def _stream_start(self) -> int | None:
        try:
            return (await self.latest_event_id())["id"]
        except ApiError as exc:
            if exc.status_code in NO_STREAM:
                return None
            raise
