"""The client's own logic on a fake transport: the key only in the header, errors carrying
the API's message, the SSE parser, and watches that fall back on polling when the stream
can't be had (the real API is tested in tests/e2e/test_client.py and test_cli.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from autosync_client import ApiError, AsyncClient, AutosyncError, Client
from autosync_client.stream import SseParser

JOB_ID = "a" * 32


def job(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID, "kind": "generation", "status": status, "user_id": "alice",
        "provider": "replicate", "model": "m/n", "created_at": "2026-11-30T10:00:00Z",
        "updated_at": "2026-11-30T10:00:00Z", "workflow_id": f"media-job-{JOB_ID}", **extra,
    }  # fmt: skip


def error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "details": {}}})


def api(
    handler: Callable[[httpx.Request], httpx.Response], seen: list[httpx.Request]
) -> httpx.MockTransport:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return httpx.MockTransport(record)


def test_the_key_travels_in_the_header_only() -> None:
    seen: list[httpx.Request] = []
    transport = api(lambda r: httpx.Response(200, json=job("queued")), seen)
    with Client("http://api.test", "secret-key", transport=transport) as client:
        client.get_job(JOB_ID)
        client.create_job("generation", {"prompt": "p"}, idempotency_key="k1")
    assert all(r.headers["authorization"] == "Bearer secret-key" for r in seen)
    assert all("secret-key" not in str(r.url) for r in seen)
    assert seen[1].headers["idempotency-key"] == "k1"
    assert json.loads(seen[1].content) == {"kind": "generation", "input": {"prompt": "p"}}


def test_config_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOSYNC_API_KEY", raising=False)
    with pytest.raises(AutosyncError, match="AUTOSYNC_API_KEY"):
        Client("http://api.test")
    monkeypatch.setenv("AUTOSYNC_API_KEY", "from-env")
    monkeypatch.setenv("AUTOSYNC_URL", "http://env.test/")
    seen: list[httpx.Request] = []
    with Client(transport=api(lambda r: httpx.Response(200, json=job("queued")), seen)) as c:
        c.get_job(JOB_ID)
    assert str(seen[0].url) == f"http://env.test/v1/jobs/{JOB_ID}"
    assert seen[0].headers["authorization"] == "Bearer from-env"


def test_an_error_answer_carries_the_apis_code_and_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/cancel"):
            return httpx.Response(
                503, text="<html>bad gateway</html>", headers={"Retry-After": "5"}
            )
        return error(404, "not_found", f"job {JOB_ID} not found")

    with Client("http://api.test", "k", transport=api(handler, [])) as client:
        with pytest.raises(ApiError) as caught:
            client.get_job(JOB_ID)
        assert (caught.value.status_code, caught.value.code) == (404, "not_found")
        assert caught.value.message == f"job {JOB_ID} not found"
        with pytest.raises(ApiError) as raw:
            client.cancel_job(JOB_ID)
        assert raw.value.status_code == 503 and "bad gateway" in raw.value.message
        assert raw.value.retry_after == 5.0


def test_sse_parser_reads_frames_and_skips_comments() -> None:
    parser = SseParser()
    lines = [
        "retry: 2000", ": following user:alice", "",
        "id: 7", "event: job.processing",
        'data: {"id": 7, "topic": "user:alice", "type": "job.processing",',
        'data:  "payload": {"id": "j", "status": "processing"}, "at": "x"}', "",
        ": keepalive", "",
        "id: 8", "event: job.succeeded", "data: not json", "",
    ]  # fmt: skip
    events = [e for line in lines if (e := parser.feed(line)) is not None]
    assert [(e.id, e.type, e.data) for e in events] == [
        (7, "job.processing", {"id": "j", "status": "processing"})
    ]


def polling_api(events: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    """A job that moves one status per read; the stream answers with `events`."""
    states = iter(["queued", "processing", "processing", "succeeded"])
    current = {"status": "queued"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events/latest":
            return httpx.Response(200, json={"id": 10})
        if request.url.path == "/v1/events":
            return events(request)
        current["status"] = next(states, current["status"])
        return httpx.Response(200, json=job(current["status"]))

    return httpx.MockTransport(handler)


@pytest.mark.parametrize("answer", [404, 503])
def test_watch_polls_when_the_stream_is_refused_or_keeps_failing(answer: int) -> None:
    opened: list[int] = []

    def events(request: httpx.Request) -> httpx.Response:
        opened.append(1)
        assert request.url.params.get_list("topic") == ["user:alice"]
        assert request.url.params["after"] == "10"
        return error(answer, "x", "no stream")

    with Client("http://api.test", "k", transport=polling_api(events)) as client:
        updates = list(client.watch_job(JOB_ID, poll_interval=0))
    assert [u.status for u in updates] == ["queued", "processing", "succeeded"]
    assert all(u.event_id is None for u in updates)
    assert len(opened) == (1 if answer == 404 else 3)  # a 5xx is retried, then given up


async def test_async_watch_follows_the_stream() -> None:
    frames = "".join(
        f"id: {i}\nevent: job.{s}\ndata: "
        + json.dumps({"id": i, "type": f"job.{s}", "payload": {"id": jid, "status": s}})
        + "\n\n"
        for i, jid, s in [
            (11, JOB_ID, "processing"),
            (12, "b" * 32, "failed"),  # another job of the user's: not this watch's
            (13, JOB_ID, "processing"),  # a repeat: nothing new
            (14, JOB_ID, "succeeded"),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/events/latest":
            return httpx.Response(200, json={"id": 10})
        if request.url.path == "/v1/events":
            return httpx.Response(200, text=frames, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=job("queued"))

    async with AsyncClient("http://api.test", "k", transport=httpx.MockTransport(handler)) as c:
        updates = [u async for u in c.watch_job(JOB_ID)]
    assert [(u.status, u.event_id) for u in updates] == [
        ("queued", None),
        ("processing", 11),
        ("succeeded", 14),
    ]


async def test_async_paging_follows_the_cursor() -> None:
    pages = {
        None: {"items": [job("succeeded", id="1" * 32)], "next_cursor": "c1"},
        "c1": {"items": [job("failed", id="2" * 32)], "next_cursor": None},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["status"] == "failed,succeeded"
        return httpx.Response(200, json=pages[request.url.params.get("cursor")])

    async with AsyncClient("http://api.test", "k", transport=httpx.MockTransport(handler)) as c:
        ids = [j.id async for j in c.iter_jobs(status="failed,succeeded", page_size=1)]
    assert ids == ["1" * 32, "2" * 32]
