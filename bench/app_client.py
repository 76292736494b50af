"""The bench's view of a running stack: submit jobs through the API, read the app DB directly
(sqlite3, read only), and ask the Replicate emulator for its counters and timelines.

Jobs of one bench phase share a project (made on first use), so each phase counts only its
own rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bench.common import bounded, log
from devstack.stack import Stack

TERMINAL = ("succeeded", "failed", "canceled")
PROVIDER_TERMINAL = ("succeeded", "failed", "canceled", "aborted")


@dataclass
class JobRow:
    id: str
    status: str
    provider_job_id: str | None
    completed_at: float | None  # unix seconds
    webhook_count: int
    poll_count: int


def unix_time(value: str | None) -> float | None:
    """A `jobs` timestamp as SQLite holds it (UTC, usually without a zone) in unix seconds."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def terminal_time(timeline: dict[str, Any]) -> float | None:
    """When the emulator made a prediction terminal, from its events timeline."""
    completed = timeline.get("completed_at")
    if isinstance(completed, int | float):
        return float(completed)
    for event in reversed(timeline.get("events") or []):
        if event.get("status") in PROVIDER_TERMINAL and isinstance(event.get("time"), int | float):
            return float(event["time"])
    return None


def completed_webhook(timeline: dict[str, Any]) -> dict[str, Any] | None:
    """The first `completed` webhook attempt the receiver acknowledged (2xx), if any."""
    events: list[dict[str, Any]] = timeline.get("events") or []
    for event in events:
        code = event.get("status_code")
        if event.get("type") == "webhook" and event.get("event") == "completed":
            if isinstance(code, int) and 200 <= code < 300:
                return event
    return None


@dataclass
class CompletionLag:
    """Seconds from the provider's completion of one job to later points on its way."""

    stored: float  # the job's DB `completed_at` (outputs copied, record `succeeded`)
    webhook_sent: float | None = None  # the emulator sent the `completed` webhook
    webhook_acked: float | None = None  # the API answered 2xx: the signal reached Temporal


class AppClient:
    def __init__(self, stack: Stack, api_key: str, *, http_connections: int = 100) -> None:
        emulator_url = stack.provider_url("replicate")
        assert emulator_url is not None, "the benches need the Replicate emulator"
        self._api = httpx.AsyncClient(
            base_url=stack.api_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(60.0, connect=10.0),
            limits=httpx.Limits(max_connections=http_connections),
        )
        self._emulator = httpx.AsyncClient(base_url=emulator_url, timeout=30.0)
        database = make_url(stack.database_url)
        if database.get_backend_name() != "sqlite" or not database.database:
            raise ValueError(f"the benches read a SQLite app DB, not {stack.database_url}")
        self._db_path = database.database
        self.submit_errors: list[str] = []
        self._projects: dict[str, str] = {}  # bench label -> project id
        self._projects_lock = asyncio.Lock()

    async def project_id(self, label: str) -> str:
        """The project standing for a bench phase, created on first use."""
        async with self._projects_lock:
            if label not in self._projects:
                response = await self._api.post("/v1/projects", json={"name": label})
                response.raise_for_status()
                self._projects[label] = str(response.json()["id"])
            return self._projects[label]

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._emulator.aclose()

    # --- API -----------------------------------------------------------------------------------

    async def submit(
        self, project: str, index: int, faults: dict[str, Any] | None = None
    ) -> str | None:
        """One generation job; its id, or None (the error is kept in `submit_errors`)."""
        job_input: dict[str, Any] = {"prompt": f"bench {project} {index}"}
        if faults:
            job_input["_emulator"] = faults
        body = {"kind": "generation", "input": job_input,
                "project_id": await self.project_id(project)}  # fmt: skip
        try:
            response = await self._api.post("/v1/jobs", json=body)
        except httpx.HTTPError as exc:
            self.submit_errors.append(f"{type(exc).__name__}: {exc}")
            return None
        if response.status_code != 202:
            self.submit_errors.append(f"HTTP {response.status_code}: {response.text[:300]}")
            return None
        job_id: str = response.json()["id"]
        return job_id

    # --- app DB --------------------------------------------------------------------------------

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        uri = f"file:{self._db_path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10.0)) as connection:
            return connection.execute(sql, params).fetchall()

    async def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._query, sql, params)

    async def status_counts(self, project: str) -> dict[str, int]:
        rows = await self.query(
            "SELECT status, count(*) FROM jobs WHERE project_id = ? GROUP BY status",
            self._projects.get(project, project),
        )
        return {str(status): int(count) for status, count in rows}

    async def wait_for(
        self, project: str, count: int, statuses: tuple[str, ...], within: float
    ) -> tuple[bool, dict[str, int]]:
        """Until `count` jobs of `project` are in one of `statuses` (or all are terminal)."""
        deadline = time.monotonic() + within
        next_log = time.monotonic() + 5.0
        while True:
            counts = await self.status_counts(project)
            reached = sum(counts.get(s, 0) for s in statuses)
            if reached >= count:
                return True, counts
            if sum(counts.get(s, 0) for s in TERMINAL) >= count and set(statuses) <= set(TERMINAL):
                return False, counts
            if time.monotonic() >= deadline:
                log(f"{project}: gave up after {within:.0f}s: {counts}")
                return False, counts
            if time.monotonic() >= next_log:
                log(f"{project}: {counts}")
                next_log = time.monotonic() + 5.0
            await asyncio.sleep(0.2)

    async def rows(self, project: str) -> list[JobRow]:
        rows = await self.query(
            "SELECT id, status, provider_job_id, completed_at, webhook_count, poll_count "
            "FROM jobs WHERE project_id = ?",
            self._projects.get(project, project),
        )
        return [
            JobRow(
                id=row[0],
                status=row[1],
                provider_job_id=row[2],
                completed_at=unix_time(row[3]),
                webhook_count=int(row[4] or 0),
                poll_count=int(row[5] or 0),
            )
            for row in rows
        ]

    # --- emulator ------------------------------------------------------------------------------

    async def emulator_stats(self) -> dict[str, Any]:
        response = await self._emulator.get("/_emulator/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    async def prediction_timeline(self, prediction_id: str) -> dict[str, Any]:
        response = await self._emulator.get(f"/_emulator/predictions/{prediction_id}/events")
        response.raise_for_status()
        timeline: dict[str, Any] = response.json()
        return timeline

    async def provider_completion_lags(self, rows: list[JobRow]) -> list[CompletionLag]:
        """For each succeeded job: how long after the emulator completed it things happened."""
        done = [r for r in rows if r.status == "succeeded" and r.provider_job_id and r.completed_at]

        async def lag(index: int) -> CompletionLag | None:
            row = done[index]
            assert row.provider_job_id is not None and row.completed_at is not None
            timeline = await self.prediction_timeline(row.provider_job_id)
            provider_done = terminal_time(timeline)
            if provider_done is None:
                return None
            result = CompletionLag(stored=row.completed_at - provider_done)
            webhook = completed_webhook(timeline)
            if webhook is not None:
                result.webhook_sent = float(webhook["sent_at"]) - provider_done
                result.webhook_acked = float(webhook["time"]) - provider_done
            return result

        lags = await bounded(len(done), 20, lag)
        return [value for value in lags if value is not None]


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per-section differences of two `/_emulator/stats` answers (numeric leaves only)."""
    delta: dict[str, dict[str, int]] = {}
    for section in ("requests", "webhooks"):
        old, new = before.get(section) or {}, after.get(section) or {}
        delta[section] = {
            key: int(value) - int(old.get(key, 0))
            for key, value in new.items()
            if isinstance(value, int | float)
        }
    return delta
