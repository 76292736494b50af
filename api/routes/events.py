"""Live state changes: Server-Sent Events (`GET /v1/events`) and WebSocket (`/v1/ws`).

Both take `topic` (repeatable, or comma-separated; default: the caller's own `user:{id}`) and
`after` (or the `Last-Event-ID` header) to resume after the last event seen. Browsers can't
set headers on EventSource or WebSocket: they pass `?token=` from `POST /v1/stream-tokens`
instead (short-lived, the rights of the key that made it; see api.link_auth). API keys never
travel in URLs.

Topics: `user:{id}` (yours; admins: anyone's), `project:{id}` (projects you own),
`sync-run:{id}` and `sync-run:*` (admins), `pull-sync:clients`, `pull-sync:cycles` and
`pull-sync:*` (admins), `batch:{id}` (bulk cancels and reruns you asked for; admins: any).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.websockets import WebSocketDisconnect

from api.auth import Caller, KeyRejected, KeyRing
from api.deps import (
    CurrentCaller,
    EventHubDep,
    KeyRingDep,
    SessionDep,
    SessionsDep,
    SettingsDep,
)
from api.event_hub import Dropped, StreamEvent, TopicFilter
from api.link_auth import LinkRejected, stream_caller
from api.pagination import MAX_DB_INT
from core.events import BATCH_TOPIC_PREFIX, SYNC_RUN_TOPIC_PREFIX
from core.links import stream_token
from core.models import Event, JobBatch, Project
from core.pull_store import PULL_SYNC_PREFIX

router = APIRouter(prefix="/v1", tags=["events"])

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 2000
MAX_TOPICS = 50


class StreamError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _split(topics: list[str]) -> list[str]:
    return [t.strip() for value in topics for t in value.split(",") if t.strip()]


async def _caller(keyring: KeyRing, secret: bytes, header: str | None, token: str | None) -> Caller:
    """The header's key if there is one, else the stream token."""
    scheme, credentials = get_authorization_scheme_param(header)
    try:
        if scheme.lower() == "bearer" and credentials:
            return await keyring.caller(credentials)
        if token:
            return await stream_caller(keyring, secret, token)
    except KeyRejected as exc:
        raise StreamError(401, str(exc)) from None
    except LinkRejected as exc:
        raise StreamError(401, exc.message) from None
    raise StreamError(
        401,
        "missing credentials: send 'Authorization: Bearer <key>', or ?token= from "
        "POST /v1/stream-tokens",
    )


async def _authorize(
    sessions: async_sessionmaker[AsyncSession], caller: Caller, topics: list[str]
) -> TopicFilter:
    """The topics as a filter, if the caller may read every one of them."""
    if len(topics) > MAX_TOPICS:
        raise StreamError(422, f"at most {MAX_TOPICS} topics per stream")
    for topic in topics:
        kind, _, ident = topic.partition(":")
        if not ident:
            raise StreamError(
                422, f"topic {topic!r}: expected user:<id>, project:<id> or sync-run:<id|*>"
            )
        if kind == "user":
            if not caller.can_see(ident):
                raise StreamError(403, f"topic {topic!r}: you may only follow your own user topic")
        elif kind == "project":
            async with sessions() as session:
                project = await session.get(Project, ident)
            if project is None or not caller.can_see(project.user_id):
                raise StreamError(404, f"topic {topic!r}: no such project")
        elif f"{kind}:" == SYNC_RUN_TOPIC_PREFIX:
            if not caller.is_admin:
                raise StreamError(403, f"topic {topic!r}: sync runs are for admins")
        elif f"{kind}:" == PULL_SYNC_PREFIX:
            if not caller.is_admin:
                raise StreamError(403, f"topic {topic!r}: pull-sync is for admins")
        elif f"{kind}:" == BATCH_TOPIC_PREFIX:
            async with sessions() as session:
                batch = await session.get(JobBatch, ident)
            if batch is None or not caller.can_see(batch.user_id):
                raise StreamError(404, f"topic {topic!r}: no such batch")
        else:
            raise StreamError(
                422, f"topic {topic!r}: expected user:<id>, project:<id> or sync-run:<id|*>"
            )
        if topic.endswith("*") and topic not in (
            f"{SYNC_RUN_TOPIC_PREFIX}*",
            f"{PULL_SYNC_PREFIX}*",
        ):
            raise StreamError(
                422, f"topic {topic!r}: only sync-run:* and pull-sync:* may use a wildcard"
            )
    return TopicFilter.of(topics)


def _after(after: int | None, last_event_id: str | None) -> int | None:
    if after is not None:
        return after
    if last_event_id:
        try:
            event_id = int(last_event_id)
        except ValueError:
            event_id = -1
        if not 0 <= event_id <= MAX_DB_INT:
            raise StreamError(422, "Last-Event-ID must be an event id (an integer)")
        return event_id
    return None


class StreamToken(BaseModel):
    token: str = Field(description="pass as `?token=` to GET /v1/events or /v1/ws")
    expires_at: datetime = Field(description="streams must open before this; get a new one then")
    user_id: str


@router.post("/stream-tokens", response_model=StreamToken)
async def create_stream_token(caller: CurrentCaller, settings: SettingsDep) -> StreamToken:
    """A short-lived token for your event stream, for clients that can't send headers.

    It opens the topics your key may follow (an admin's key: admin topics too) until it
    expires, and stops with the key when the key is revoked.
    """
    token, expires = stream_token(
        settings.signing_secret(),
        caller.user_id,
        caller.key_id,
        ttl_seconds=settings.link_ttl_seconds,
    )
    return StreamToken(
        token=token, expires_at=datetime.fromtimestamp(expires, UTC), user_id=caller.user_id
    )


@router.get("/events/latest")
async def latest_event(caller: CurrentCaller, session: SessionDep) -> dict[str, int]:
    """The newest event id: pass it as `after` to stream only what happens from now on."""
    return {"id": int(await session.scalar(select(func.max(Event.id))) or 0)}


def _sse(event: StreamEvent) -> str:
    return f"id: {event.id}\nevent: {event.type}\ndata: {event.text}\n\n"


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"}},
)
async def events(
    request: Request,
    hub: EventHubDep,
    keyring: KeyRingDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    topic: Annotated[list[str] | None, Query(description="topics to follow")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_DB_INT, description="resume after this event id")
    ] = None,
    token: Annotated[
        str | None, Query(description="a token from POST /v1/stream-tokens, for EventSource")
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: `id` is the event id, `event` its type, `data` the event as JSON."""
    try:
        caller = await _caller(
            keyring, settings.signing_secret(), request.headers.get("authorization"), token
        )
        topics = _split(topic or []) or [f"user:{caller.user_id}"]
        filter_ = await _authorize(sessions, caller, topics)
        start = _after(after, request.headers.get("last-event-id"))
    except StreamError as exc:
        raise HTTPException(exc.status_code, exc.message) from None

    async def body() -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n: following {', '.join(topics)}\n\n"
        stream = hub.batches(filter_, start).__aiter__()
        next_batch: asyncio.Task[list[StreamEvent]] | None = None
        try:
            while True:
                if next_batch is None:
                    next_batch = asyncio.ensure_future(stream.__anext__())
                done, _ = await asyncio.wait({next_batch}, timeout=KEEPALIVE_SECONDS)
                if not done:
                    yield ": keepalive\n\n"
                    continue
                batch = next_batch.result()  # Dropped / StopAsyncIteration end the stream
                next_batch = None
                # One write for all the events waiting: the same SSE frames, fewer sends.
                yield "".join(_sse(event) for event in batch)
        except Dropped:
            return
        except StopAsyncIteration:  # the hub closed: this process is shutting down
            yield ": server going away, reconnect with Last-Event-ID\n\n"
            return
        finally:
            if next_batch is not None:
                next_batch.cancel()
                with contextlib.suppress(BaseException):
                    await next_batch
            await stream.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/ws")
async def ws(
    websocket: WebSocket,
    hub: EventHubDep,
    keyring: KeyRingDep,
    sessions: SessionsDep,
    settings: SettingsDep,
    topic: Annotated[list[str] | None, Query()] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_DB_INT)] = None,
    token: Annotated[str | None, Query()] = None,
) -> None:
    """WebSocket: each message is one event as JSON (`id`, `topic`, `type`, `payload`, `at`).

    Errors before streaming close the socket with 4401 (auth), 4403, 4404 or 4422 and a reason.
    """
    try:
        caller = await _caller(
            keyring, settings.signing_secret(), websocket.headers.get("authorization"), token
        )
        topics = _split(topic or []) or [f"user:{caller.user_id}"]
        filter_ = await _authorize(sessions, caller, topics)
        start = _after(after, websocket.headers.get("last-event-id"))
    except StreamError as exc:
        await websocket.close(code=4000 + exc.status_code, reason=exc.message[:120])
        return
    await websocket.accept()

    async def watch_close() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()  # clients don't talk; this sees them leave

    async def pump() -> None:
        async for batch in hub.batches(filter_, start):
            for event in batch:
                await websocket.send_text(event.text)

    # Two tasks rather than a race per event: sending stays a queue read and a write.
    watcher = asyncio.create_task(watch_close())
    pumping = asyncio.create_task(pump())
    try:
        await asyncio.wait({watcher, pumping}, return_when=asyncio.FIRST_COMPLETED)
        if pumping.done() and isinstance(pumping.exception(), Dropped):
            await websocket.close(
                code=4008, reason="too far behind: reconnect with ?after=<last id>"
            )
        elif pumping.done() and pumping.exception() is None:  # the hub closed: shutting down
            await websocket.close(code=1001, reason="server going away: reconnect with ?after")
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        for task in (pumping, watcher):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
