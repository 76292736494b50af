"""Helpers shared by the emulator tests: waiting, a webhook receiver, and API shortcuts."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response

from devstack.processes import ManagedProcess, free_port

TOKEN = "test-token"
RETRY_DELAYS = [0.2, 0.2, 0.3]  # the emulator under test retries terminal webhooks after these
TERMINAL = ("succeeded", "failed", "canceled", "aborted")
VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"

T = TypeVar("T")


def wait_for(
    fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 10.0, what: str = ""
) -> T:
    """Call `fetch` until `done` accepts its result, and return that result.

    Fails the test after `timeout` seconds; a deadline, not a timing assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or fetch}; last: {result!r}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Delivery:
    """One webhook request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


class WebhookReceiver:
    """Records webhooks per hook name; answers with planned status codes, then 200."""

    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self._lock = threading.Lock()
        self._deliveries: defaultdict[str, list[Delivery]] = defaultdict(list)
        self._plans: defaultdict[str, deque[int]] = defaultdict(deque)
        self._server = uvicorn.Server(
            uvicorn.Config(self._app(), host="127.0.0.1", port=port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hooks/{name}")
        async def hook(name: str, request: Request) -> Response:
            body = await request.body()
            with self._lock:
                self._deliveries[name].append(Delivery(dict(request.headers), body))
                plan = self._plans[name]
                status = plan.popleft() if plan else 200
            return Response(status_code=status)

        return app

    def start(self) -> None:
        self._thread.start()
        wait_for(lambda: self._server.started, bool, what="webhook receiver")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def url(self, name: str) -> str:
        return f"{self.base_url}/hooks/{name}"

    def answer(self, name: str, statuses: list[int]) -> None:
        with self._lock:
            self._plans[name].extend(statuses)

    def deliveries(self, name: str) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries[name])

    def wait_count(self, name: str, count: int, timeout: float = 10.0) -> list[Delivery]:
        return wait_for(
            lambda: self.deliveries(name),
            lambda found: len(found) >= count,
            timeout=timeout,
            what=f"{count} webhooks on {name}",
        )


def create(
    api: httpx.Client,
    body: dict[str, Any],
    path: str = "/v1/predictions",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create a prediction or training and check Replicate's 201."""
    response = api.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


def get(api: httpx.Client, job_id: str, kind: str = "predictions") -> dict[str, Any]:
    response = api.get(f"/v1/{kind}/{job_id}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def wait_status(
    api: httpx.Client, job_id: str, statuses: tuple[str, ...] = TERMINAL, kind: str = "predictions"
) -> dict[str, Any]:
    """Poll until the job's status is one of `statuses`; return its JSON."""
    return wait_for(
        lambda: get(api, job_id, kind),
        lambda data: data["status"] in statuses,
        what=f"{job_id} to reach {statuses}",
    )


def timeline(api: httpx.Client, job_id: str) -> dict[str, Any]:
    response = api.get(f"/_emulator/predictions/{job_id}/events")
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def webhook_attempts(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    return [e for e in timeline(api, job_id)["events"] if e["type"] == "webhook"]


@contextmanager
def running_emulator(module: str, env: dict[str, str], log_dir: Path) -> Iterator[str]:
    """`python -m <module>` on a free port until the block ends; yields its base URL."""
    port = free_port()
    process = ManagedProcess(
        module.rsplit(".", 1)[-1] + "-emulator",
        [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)],
        log_dir=log_dir,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    url = f"http://127.0.0.1:{port}"
    with process:
        process.wait_http(f"{url}/_emulator/health", timeout=30)
        yield url
