"""Following a job or a sync run: the live stream first, polling when there is none.

The API's stream is Server-Sent Events at `GET /v1/events?topic=…&after=<id>` (api/routes/
events.py): `id:` the event id, `event:` its type, `data:` the event as JSON; comment lines
(`:`) keep the connection alive. A job's events (`job.{status}`) go to its owner's topic
`user:{id}`; a sync run's (`sync_run.{status}`, `sync_run.module`, `sync_run.log`) to
`sync-run:{id}` (admins).

Nothing is missed between reading the state and following it: the watch asks for the newest
event id first, then reads the job or run, then streams every event after that id (a change
made in between is both in the read and in the stream; repeats are dropped). When the stream
can't be opened or breaks, the watch goes on by polling, with the same updates.

The watchers here hold the state only; `Client` and `AsyncClient` do the I/O.
"""

from __future__ import annotations

import json
from typing import Any

from autosync_client.models import (
    Event,
    Job,
    JobUpdate,
    LogLine,
    ModuleProgress,
    RunUpdate,
    SyncRun,
)

# How long a stream may be silent: the server sends a keepalive every 15 s.
STREAM_READ_TIMEOUT = 60.0
# Streams that break in a row before the watch gives up on them and polls.
MAX_STREAM_FAILURES = 3


class SseParser:
    """Server-Sent Events, one line at a time (lines without their newline)."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._type = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        return None

    def _dispatch(self) -> Event | None:
        id_, type_, data = self._id, self._type, "\n".join(self._data)
        self._id, self._type, self._data = None, "message", []
        if id_ is None or not data:
            return None
        try:
            body = json.loads(data)
        except ValueError:
            return None
        # `data` is the whole event (id, topic, type, payload, at); the payload is what matters.
        payload = body.get("payload", body) if isinstance(body, dict) else {}
        return Event(id=int(id_), type=type_, data=payload if isinstance(payload, dict) else {})


def stream_params(topics: list[str], after: int | None) -> dict[str, Any]:
    params: dict[str, Any] = {"topic": topics}
    if after is not None:
        params["after"] = after
    return params


class JobWatch:
    """A job's updates, from reads and events alike, each change once."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self._seen: tuple[Any, ...] | None = None
        self.done = False

    def _emit(self, update: JobUpdate) -> JobUpdate | None:
        key = (update.status, update.provider_status, update.error, len(update.outputs))
        if key == self._seen or self.done:
            return None
        self._seen = key
        self.done = update.done
        return update

    def read(self, job: Job) -> JobUpdate | None:
        return self._emit(
            JobUpdate(
                id=job.id,
                status=job.status,
                provider_status=job.provider_status,
                error=job.error,
                outputs=[o.model_dump(mode="json") for o in job.outputs],
            )
        )

    def event(self, event: Event) -> JobUpdate | None:
        if not event.type.startswith("job.") or event.data.get("id") != self.job_id:
            return None
        data = event.data
        return self._emit(
            JobUpdate(
                id=self.job_id,
                status=str(data.get("status") or event.type.removeprefix("job.")),
                provider_status=data.get("provider_status"),
                error=data.get("error"),
                outputs=data.get("outputs") or [],
                event_id=event.id,
            )
        )


class RunWatch:
    """A sync run's updates: its status, each module's progress, its log lines."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._status: str | None = None
        self._modules: dict[str, ModuleProgress] = {}
        self.last_log_id = 0
        self.done = False

    def _status_update(self, status: str, event_id: int | None) -> list[RunUpdate]:
        if status == self._status or self.done:
            return []
        self._status = status
        update = RunUpdate(kind="status", run_id=self.run_id, status=status, event_id=event_id)
        self.done = update.done
        return [update]

    def _module_update(
        self, module: str, progress: ModuleProgress, event_id: int | None
    ) -> list[RunUpdate]:
        if self._modules.get(module) == progress or self.done:
            return []
        self._modules[module] = progress
        return [
            RunUpdate(
                kind="module", run_id=self.run_id, module=module, progress=progress,
                event_id=event_id,
            )
        ]  # fmt: skip

    def read(self, run: SyncRun) -> list[RunUpdate]:
        """Module changes first, then the status: a run that ends ends the watch."""
        updates: list[RunUpdate] = []
        for module, progress in run.modules.items():
            updates += self._module_update(module, progress, None)
        return updates + self._status_update(run.status, None)

    def logs(self, lines: list[LogLine]) -> list[RunUpdate]:
        updates = []
        for line in lines:
            if line.id is not None:
                if line.id <= self.last_log_id:
                    continue
                self.last_log_id = line.id
            updates.append(RunUpdate(kind="log", run_id=self.run_id, log=line))
        return updates

    def event(self, event: Event) -> list[RunUpdate]:
        data = event.data
        if data.get("run_id") != self.run_id or self.done:
            return []
        if event.type == "sync_run.module":
            progress = ModuleProgress.model_validate({"status": "pending", **data["progress"]})
            return self._module_update(str(data.get("module")), progress, event.id)
        if event.type == "sync_run.log":
            line = LogLine.model_validate(data)
            return [RunUpdate(kind="log", run_id=self.run_id, log=line, event_id=event.id)]
        if event.type.startswith("sync_run.") and data.get("status"):
            return self._status_update(str(data["status"]), event.id)
        return []
