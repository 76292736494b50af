"""The state file: jobs and version names saved as JSON, so a restarted emulator carries on.

Only what a restart needs is kept: the jobs (with their own faults, history and any terminal
webhook still being delivered) and the version-to-model names. Global faults, the per-body
create-fault counters and the stats counters start afresh.

Writes are atomic: the JSON goes to `<file>.tmp`, which then replaces the file, so a crash
leaves either the old state or the new one, never half of one.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from emulators.replicate.models import Faults, Status, WebhookEvent
from emulators.replicate.records import PendingWebhook, Record, RecordKind
from emulators.scaffold.faults import JobFaults
from emulators.scaffold.inputs import FromInput
from emulators.scaffold.media import FileKind, FileSpec

log = logging.getLogger(__name__)

# 2: the common fault switches (`scaffold.faults`) and a job's own counts (`job_faults`).
FORMAT = 2


class SavedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: FileKind
    seed: str
    width: int
    height: int
    pad_to: int | None
    image: str | None  # base64 of a PNG made from the input
    seconds: float | None

    def spec(self) -> FileSpec:
        image = None if self.image is None else base64.b64decode(self.image)
        return FileSpec(**{**self.model_dump(), "image": image})


def file_to_dict(spec: FileSpec) -> dict[str, Any]:
    found = dataclasses.asdict(spec)
    if spec.image is not None:
        found["image"] = base64.b64encode(spec.image).decode()
    return found


class SavedSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    operation: Literal["upscale", "edit"]
    scale: float


class SavedWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: WebhookEvent
    msg_id: str
    body: str
    status: str


class SavedJobFaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    errors_on: list[str]
    rate_limits: int
    server_errors: int
    drop_connections: int
    rate_limit_rate: float
    server_error_rate: float
    drop_connection_rate: float
    latency_seconds: float | None
    carry: dict[str, float]


class SavedRecord(BaseModel):
    """A `Record` as stored; `record_to_dict` writes exactly these keys."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: RecordKind
    model: str
    version: str
    input: dict[str, Any]
    base_url: str
    faults: Faults
    webhook: str | None
    webhook_events_filter: list[str] | None
    files: dict[str, SavedFile]
    final_output: Any
    deployment: str | None
    destination: str | None
    deadline: float | None
    status: Status
    output: Any
    logs: str
    error: str | None
    data_removed: bool
    created_at: float
    started_at: float | None
    completed_at: float | None
    published: list[str]
    history: list[dict[str, Any]]
    job_faults: SavedJobFaults
    starting_seconds: float
    processing_seconds: float
    halfway: bool
    pending_webhook: SavedWebhook | None
    source: SavedSource | None


class SavedState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[2]
    saved_at: float
    version_models: dict[str, str]
    records: list[SavedRecord]


def record_to_dict(record: Record) -> dict[str, Any]:
    """Everything about a job that outlives the process, as plain JSON values."""
    pending = record.pending_webhook
    return {
        "id": record.id,
        "kind": record.kind,
        "model": record.model,
        "version": record.version,
        "input": record.input,
        "base_url": record.base_url,
        "faults": record.faults.model_dump(mode="json"),
        "webhook": record.webhook,
        "webhook_events_filter": record.webhook_events_filter,
        "files": {name: file_to_dict(spec) for name, spec in record.files.items()},
        "final_output": record.final_output,
        "deployment": record.deployment,
        "destination": record.destination,
        "deadline": record.deadline,
        "status": record.status,
        "output": record.output,
        "logs": record.logs,
        "error": record.error,
        "data_removed": record.data_removed,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        # In file order, so a restored partial output publishes the same prefix.
        "published": [name for name in record.files if name in record.published],
        "history": record.history,
        "job_faults": dataclasses.asdict(record.job_faults),
        "starting_seconds": record.starting_seconds,
        "processing_seconds": record.processing_seconds,
        "halfway": record.halfway,
        "pending_webhook": None if pending is None else dataclasses.asdict(pending),
        "source": None if record.source is None else dataclasses.asdict(record.source),
    }


def record_from_saved(saved: SavedRecord) -> Record:
    pending = saved.pending_webhook
    record = Record(
        id=saved.id,
        kind=saved.kind,
        model=saved.model,
        version=saved.version,
        input=saved.input,
        base_url=saved.base_url,
        faults=saved.faults,
        webhook=saved.webhook,
        webhook_events_filter=saved.webhook_events_filter,
        files={name: spec.spec() for name, spec in saved.files.items()},
        final_output=saved.final_output,
        deployment=saved.deployment,
        destination=saved.destination,
        deadline=saved.deadline,
        status=saved.status,
        output=saved.output,
        logs=saved.logs,
        error=saved.error,
        data_removed=saved.data_removed,
        created_at=saved.created_at,
        started_at=saved.started_at,
        completed_at=saved.completed_at,
        published=set(saved.published),
        history=saved.history,
        job_faults=JobFaults(**saved.job_faults.model_dump()),
        starting_seconds=saved.starting_seconds,
        processing_seconds=saved.processing_seconds,
        halfway=saved.halfway,
        pending_webhook=None if pending is None else PendingWebhook(**pending.model_dump()),
        source=None if saved.source is None else FromInput(**saved.source.model_dump()),
    )
    if record.terminal:
        record.done.set()
    if record.terminal or record.source is None:
        record.rendered.set()
    return record


def encode_record(record: Record) -> str:
    return json.dumps(record_to_dict(record), separators=(",", ":"))


def state_text(saved_at: float, version_models: dict[str, str], encoded_records: list[str]) -> str:
    """The whole file from already-encoded records (re-encoding only changed jobs is cheaper)."""
    head = json.dumps(
        {"format": FORMAT, "saved_at": saved_at, "version_models": version_models},
        separators=(",", ":"),
    )
    return head[:-1] + ',"records":[' + ",".join(encoded_records) + "]}"


class StateFile:
    """Reads and atomically replaces one JSON state file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(self.path.name + ".tmp")

    def load(self) -> SavedState | None:
        """The saved state, or None if there is none or it can't be read (with a warning)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("can't read emulator state file %s (%s); starting empty", self.path, exc)
            return None
        try:
            return SavedState.model_validate_json(raw)
        except ValidationError as exc:  # also what invalid JSON raises
            first = exc.errors()[0] if exc.error_count() else None
            where = ".".join(str(part) for part in first["loc"]) if first else "?"
            self.set_aside(f"it does not parse ({first['msg'] if first else exc} at {where})")
            return None

    def set_aside(self, why: str) -> None:
        """Keep an unusable file as `<file>.unreadable` (saving would overwrite it) and warn."""
        aside = self.path.with_name(self.path.name + ".unreadable")
        log.warning(
            "ignoring emulator state file %s: %s; starting empty, old file kept as %s",
            self.path,
            why,
            aside,
        )
        try:
            os.replace(self.path, aside)
        except OSError:
            pass

    def write(self, text: str) -> None:
        """Replace the file with `text` so that readers see the old or the new whole file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self._tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(self._tmp, self.path)
        except BaseException:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            raise
