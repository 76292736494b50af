"""The emulator's memory: jobs, the tasks that move them through their lifecycle, and expiry.

Everything runs on the server's single event loop, so state changes between two `await`s are
atomic and no locks are needed. Every transition to a terminal status goes through `finish`,
which is idempotent: cancel, deadline, forced completion and the normal end can race safely.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import Counter
from typing import Any

import httpx

from emulators.replicate.config import EmulatorConfig
from emulators.replicate.faults import FaultBook
from emulators.replicate.models import ALL_STATUSES, Status, WebhookEvent
from emulators.replicate.outputs import plan_prediction, plan_training, with_urls
from emulators.replicate.parsing import CreateRequest
from emulators.replicate.records import Record, RecordKind, new_id
from emulators.replicate.stats import Stats
from emulators.replicate.tasks import TaskSet
from emulators.replicate.webhooks import WebhookSender

PROGRESS_STEPS = 50


class Emulator:
    """An in-memory Replicate account."""

    def __init__(self, config: EmulatorConfig, http: httpx.AsyncClient) -> None:
        self.config = config
        self.stats = Stats()
        self.faults = FaultBook()
        self._tasks = TaskSet()
        self.webhooks = WebhookSender(config, http, self.stats, self._tasks)
        self._records: dict[str, Record] = {}
        self._runners: dict[str, list[asyncio.Task[None]]] = {}
        # Versions seen as `owner/name:<id>` or made by trainings, so a bare version id
        # resolves to its model (and so to the right kind of output).
        self._version_models: dict[str, str] = {}

    # -- queries -------------------------------------------------------------------------

    def model_for_version(self, version: str) -> str:
        """The model a bare version id belongs to, if it was ever named; else a made-up one."""
        return self._version_models.get(version, f"emulator/model-{version[:8]}")

    def remember_version(self, version: str, model: str) -> None:
        self._version_models[version] = model

    def get(self, job_id: str, kind: RecordKind | None = None) -> Record | None:
        """A job by id (a training is also reachable as a prediction, as on Replicate)."""
        record = self._records.get(job_id)
        if record is None or (kind is not None and record.kind != kind):
            return None
        self._expire_if_due(record)
        return record

    def list(self, kind: RecordKind) -> list[Record]:
        """Jobs of one kind, newest first."""
        records = [r for r in reversed(self._records.values()) if r.kind == kind]
        for record in records:
            self._expire_if_due(record)
        return records

    def predictions_by_status(self) -> dict[str, int]:
        counts = Counter(record.status for record in self._records.values())
        return {status: counts[status] for status in ALL_STATUSES}

    async def wait_terminal(self, record: Record, seconds: float) -> None:
        """Hold for `Prefer: wait`: until the job ends or `seconds` pass."""
        try:
            async with asyncio.timeout(seconds):
                await record.done.wait()
        except TimeoutError:
            pass

    # -- commands ------------------------------------------------------------------------

    def create(
        self,
        request: CreateRequest,
        *,
        kind: RecordKind,
        model: str,
        version: str,
        base_url: str,
        cancel_after: float | None = None,
        deployment: str | None = None,
    ) -> Record:
        faults = self.faults.effective(request.faults)
        job_id = new_id()
        if kind == "training":
            assert request.destination is not None
            plan = plan_training(job_id, request.destination, faults.file_bytes)
        else:
            plan = plan_prediction(job_id, model, request.input, faults.file_bytes)
        record = Record(
            id=job_id,
            kind=kind,
            model=model,
            version=version,
            input=request.input,
            base_url=base_url,
            faults=faults,
            webhook=request.webhook,
            webhook_events_filter=request.webhook_events_filter,
            files=plan.files,
            deployment=deployment,
            destination=request.destination,
        )
        record.final_output = with_urls(plan.final, {n: record.file_url(n) for n in plan.files})
        if request.faults is not None and "server_errors" in request.faults.model_fields_set:
            if {"get", "cancel"} & set(faults.server_errors_on):
                record.server_errors_left = faults.server_errors
        if cancel_after is not None:
            record.deadline = record.created_at + cancel_after
        self._records[job_id] = record
        self._note_status(record)
        self.webhooks.emit(record, "start")
        runners = [self._tasks.spawn(self._run(record), name=f"lifecycle-{job_id}")]
        if cancel_after is not None:
            runners.append(self._tasks.spawn(self._watch_deadline(record, cancel_after)))
        self._runners[job_id] = runners
        return record

    def cancel(self, record: Record) -> None:
        """Cancel a running job at once; a finished one stays as it is."""
        self.finish(record, "canceled")

    def finish(self, record: Record, status: Status, error: str | None = None) -> bool:
        """Make the job terminal and send its `completed` webhook; False if it already was."""
        if record.terminal:
            return False
        record.status = status
        record.completed_at = time.time()
        if status == "succeeded":
            record.output = record.final_output
            record.published = set(record.files)
        elif status == "failed":
            record.error = error or "Prediction failed"
            record.output = None
            record.published.clear()
            record.logs += f"Traceback (most recent call last):\nRuntimeError: {record.error}\n"
        # canceled / aborted keep whatever partial output was already there, like Replicate.
        self._note_status(record)
        record.done.set()
        current = asyncio.current_task()
        for task in self._runners.pop(record.id, []):
            if task is not current:
                task.cancel()
        self.webhooks.emit(record, "completed")
        return True

    def expire_files(self, record: Record) -> None:
        """Remove the outputs as Replicate's data retention does: files 404, output null."""
        if record.data_removed:
            return
        record.data_removed = True
        record.published.clear()
        record.history.append({"type": "data_removed", "time": time.time()})

    async def reset(self) -> None:
        """Forget everything: jobs (stopping their tasks and webhooks), faults and counters."""
        await self._tasks.cancel_all()
        self._records.clear()
        self._runners.clear()
        self._version_models.clear()
        self.webhooks.reset()
        self.faults.reset()
        self.stats.clear()

    async def close(self) -> None:
        await self._tasks.cancel_all()

    # -- lifecycle -----------------------------------------------------------------------

    async def _run(self, record: Record) -> None:
        faults = record.faults
        if faults.stay_starting:
            await asyncio.Event().wait()  # until canceled or forced terminal
        starting = self.config.starting_seconds
        if faults.starting_seconds is not None:
            starting = faults.starting_seconds
        await asyncio.sleep(starting)

        record.status = "processing"
        record.started_at = time.time()
        self._note_status(record)
        seed = int.from_bytes(hashlib.sha256(record.id.encode()).digest()[:4], "big")
        if record.kind == "training":
            self._log(record, f"Loading base weights for {record.model}\n", "logs")
        else:
            self._log(record, f"Using seed: {seed}\n", "logs")

        processing = self._processing_seconds(record)
        await asyncio.sleep(processing / 2)
        self._log(record, _progress_line(PROGRESS_STEPS // 2), None)
        if isinstance(record.final_output, list) and not faults.fail:
            # Image models hand out their first files before finishing; so does the emulator.
            shown = record.final_output[: math.ceil(len(record.final_output) / 2)]
            record.output = shown
            record.published.update(list(record.files)[: len(shown)])
            self.webhooks.emit(record, "output")
        else:
            self.webhooks.emit(record, "logs")
        await asyncio.sleep(processing / 2)

        self._log(record, _progress_line(PROGRESS_STEPS), None)
        if faults.fail:
            self.finish(record, "failed", faults.fail)
        else:
            if record.kind == "training":
                new_version = str(record.final_output["version"]).split(":")[1]
                self.remember_version(new_version, str(record.destination))
            self.finish(record, "succeeded")

    async def _watch_deadline(self, record: Record, seconds: float) -> None:
        """`Cancel-After`: abort if never started, cancel if running."""
        await asyncio.sleep(seconds)
        self.finish(record, "aborted" if record.status == "starting" else "canceled")

    def _processing_seconds(self, record: Record) -> float:
        if record.faults.processing_seconds is not None:
            return record.faults.processing_seconds
        if record.kind == "training":
            return self.config.training_processing_seconds
        return self.config.processing_seconds

    def _file_ttl(self, record: Record) -> float:
        if record.faults.file_ttl_seconds is not None:
            return record.faults.file_ttl_seconds
        return self.config.file_ttl_seconds

    def _expire_if_due(self, record: Record) -> None:
        # Lazy: expiry needs no timer, it is noticed by whoever looks next.
        if record.completed_at is not None and not record.data_removed:
            if time.time() >= record.completed_at + self._file_ttl(record):
                self.expire_files(record)

    def _log(self, record: Record, line: str, event: WebhookEvent | None) -> None:
        record.logs += line
        if event is not None:
            self.webhooks.emit(record, event)

    @staticmethod
    def _note_status(record: Record) -> None:
        entry: dict[str, Any] = {"type": "status", "status": record.status, "time": time.time()}
        record.history.append(entry)


def _progress_line(done: int) -> str:
    """A tqdm-style line, which replicate-python's `Prediction.progress` knows how to parse."""
    percent = done * 100 // PROGRESS_STEPS
    bar = ("█" * (percent // 10)).ljust(10)
    return f"{percent:3d}%|{bar}| {done}/{PROGRESS_STEPS} [00:01<00:01, 25.00it/s]\n"
