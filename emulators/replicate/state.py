"""The emulator's memory: jobs, the tasks that move them through their lifecycle, and expiry.

Everything runs on the server's single event loop, so state changes between two `await`s are
atomic and no locks are needed. Every transition to a terminal status goes through `finish`,
which is idempotent: cancel, deadline, forced completion and the normal end can race safely.

A job's lifecycle is laid out in wall-clock time from its `created_at` (or `started_at`), so
with a state file (`EmulatorConfig.state_file`) a restarted emulator resumes each job where the
clock says it should be: whatever fell due while it was down happens at once on startup, the
rest on time. Every change worth keeping goes through `_touch`; a saver task writes the file at
most every `SAVE_INTERVAL_SECONDS` and once more on shutdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import httpx

from emulators.replicate.config import EmulatorConfig
from emulators.replicate.models import ALL_STATUSES, Faults, Status, WebhookEvent
from emulators.replicate.outputs import plan_prediction, plan_training, with_urls
from emulators.replicate.parsing import CreateRequest
from emulators.replicate.persistence import (
    SavedState,
    StateFile,
    encode_record,
    record_from_saved,
    state_text,
)
from emulators.replicate.records import Record, RecordKind, new_id
from emulators.replicate.webhooks import Webhooks
from emulators.scaffold.emulator import EmulatorBase
from emulators.scaffold.inputs import FromInput, render
from emulators.scaffold.jobs import ProviderJob
from emulators.scaffold.stats import WEBHOOK_COUNTERS

PROGRESS_STEPS = 50
SAVE_INTERVAL_SECONDS = 0.5

log = logging.getLogger(__name__)


# Request kinds counted; anything else under /v1 is "other".
REQUEST_KINDS = ("create", "get", "cancel", "list", "file", "secret", "other")


class Emulator(EmulatorBase[EmulatorConfig, Faults]):
    """An in-memory Replicate account."""

    def __init__(self, config: EmulatorConfig, http: httpx.AsyncClient) -> None:
        super().__init__(
            config,
            Faults,
            request_kinds=REQUEST_KINDS,
            webhook_counters=(*WEBHOOK_COUNTERS, "throttled"),
        )
        self.http = http
        self.webhooks = Webhooks(config, http, self.stats, self.tasks, self._touch)
        self._records: dict[str, Record] = {}
        self._runners: dict[str, list[asyncio.Task[None]]] = {}
        # Versions seen as `owner/name:<id>` or made by trainings, so a bare version id
        # resolves to its model (and so to the right kind of output).
        self._version_models: dict[str, str] = {}
        # Persistence: each job's JSON is cached and re-encoded only after it changed.
        self._state_file = StateFile(config.state_file) if config.state_file else None
        self._encoded: dict[str, str] = {}
        self._changed: set[str] = set()
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._saver: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the state file, if any, resume its jobs and start saving changes."""
        if self._state_file is None:
            return
        saved = self._state_file.load()
        if saved is not None:
            try:
                self._restore(saved)
            except Exception as exc:  # a file we can't resume from must not stop `make up`
                log.exception("restoring %s failed", self._state_file.path)
                await self.reset()
                self._state_file.set_aside(f"restoring it failed ({type(exc).__name__}: {exc})")
        self._saver = asyncio.get_running_loop().create_task(self._save_loop(), name="state-saver")

    # -- queries -------------------------------------------------------------------------

    def model_for_version(self, version: str) -> str:
        """The model a bare version id belongs to, if it was ever named; else a made-up one."""
        return self._version_models.get(version, f"emulator/model-{version[:8]}")

    def remember_version(self, version: str, model: str) -> None:
        if self._version_models.get(version) != model:
            self._version_models[version] = model
            self._dirty.set()

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

    def stats_extra(self) -> dict[str, Any]:
        counts = Counter(record.status for record in self._records.values())
        return {"predictions": {status: counts[status] for status in ALL_STATUSES}}

    def provider_jobs(self) -> Iterable[ProviderJob]:
        return (
            ProviderJob(r.id, r.webhook, r.status, r.status == "canceled")
            for r in self._records.values()
        )

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
        starting = self.config.starting_seconds
        if faults.starting_seconds is not None:
            starting = faults.starting_seconds
        processing = faults.processing_seconds
        if processing is None:
            processing = self.config.processing_seconds
            if kind == "training":
                processing = self.config.training_processing_seconds
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
            starting_seconds=starting,
            processing_seconds=processing,
        )
        record.source = plan.source
        record.final_output = with_urls(plan.final, {n: record.file_url(n) for n in plan.files})
        if faults.output_url is not None:
            record.final_output = faults.output_url
        record.job_faults = self.faults.for_job(request.faults)
        if cancel_after is not None:
            record.deadline = record.created_at + cancel_after
        self._records[job_id] = record
        self._note_status(record)
        self._touch(record)
        self.webhooks.emit(record, "start")
        self._render_soon(record)
        runners = [self.tasks.spawn(self._run(record), name=f"lifecycle-{job_id}")]
        if cancel_after is not None:
            runners.append(self.tasks.spawn(self._watch_deadline(record, cancel_after)))
        self._runners[job_id] = runners
        return record

    def cancel(self, record: Record) -> None:
        """Cancel a running job at once; a finished one stays as it is."""
        self.finish(record, "canceled")

    def finish(
        self, record: Record, status: Status, error: str | None = None, *, at: float | None = None
    ) -> bool:
        """Make the job terminal and send its `completed` webhook; False if it already was.

        `at` backdates the end to when it fell due (for a job that ended while we were down).
        """
        if record.terminal:
            return False
        record.status = status
        record.completed_at = time.time() if at is None else at
        if status == "succeeded":
            record.output = record.final_output
            record.published = set(record.files)
        elif status == "failed":
            record.error = error or "Prediction failed"
            record.output = None
            record.published.clear()
            record.logs += f"Traceback (most recent call last):\nRuntimeError: {record.error}\n"
        # canceled / aborted keep whatever partial output was already there, like Replicate.
        self._note_status(record, at)
        self._touch(record)
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
        self._touch(record)

    def note_answer_lost(self, record: Record) -> None:
        """The create's answer was replaced by a 500 (`lost_create_responses`); the job runs."""
        record.history.append({"type": "create_answer_lost", "time": time.time()})
        self._touch(record)

    def note_fault_used(self, record: Record) -> None:
        """A per-job fault counter (`job_faults`) went down; keep that across restarts."""
        self._touch(record)

    def forget(self) -> None:
        """Forget every job (with a state file, it is saved empty too) and version name."""
        self._records.clear()
        self._runners.clear()
        self._version_models.clear()
        self._encoded.clear()
        self._changed.clear()
        self._dirty.set()
        self.webhooks.reset()

    async def close(self) -> None:
        """Stop every job and webhook where it is, then write the state file a last time."""
        await super().close()
        if self._saver is not None:
            self._stopping.set()
            self._dirty.set()
            await self._saver

    # -- lifecycle -----------------------------------------------------------------------

    async def _run(self, record: Record) -> None:
        """Drive a job from where it is to its end, on its wall-clock timeline."""
        if record.status == "starting":
            if record.faults.stay_starting:
                await asyncio.Event().wait()  # until canceled or forced terminal
            await _sleep_until(record.created_at + record.starting_seconds)
            self._start_processing(record, time.time())
        assert record.started_at is not None
        if not record.halfway:
            await _sleep_until(record.started_at + record.processing_seconds / 2)
            await record.rendered.wait()  # partial outputs are the final files
            self._reach_halfway(record)
        await _sleep_until(record.started_at + record.processing_seconds)
        await record.rendered.wait()
        self._complete(record)

    def _render_soon(self, record: Record) -> None:
        """Make the job's PNGs from its input image in the background (see `scaffold.inputs`)."""
        if record.source is None:
            record.rendered.set()
            return
        self.tasks.spawn(self._render(record, record.source), name=f"render-{record.id}")

    async def _render(self, record: Record, source: FromInput) -> None:
        record.files, entry = await render(self.http, record.files, source)
        record.history.append(entry)
        record.source = None
        record.rendered.set()
        self._touch(record)

    def _start_processing(self, record: Record, at: float, *, emit: bool = True) -> None:
        record.status = "processing"
        record.started_at = at
        self._note_status(record, at)
        seed = int.from_bytes(hashlib.sha256(record.id.encode()).digest()[:4], "big")
        if record.kind == "training":
            line = f"Loading base weights for {record.model}\n"
        else:
            line = f"Using seed: {seed}\n"
        self._log(record, line, "logs" if emit else None)
        self._touch(record)

    def _reach_halfway(self, record: Record, *, emit: bool = True) -> None:
        record.halfway = True
        self._log(record, _progress_line(PROGRESS_STEPS // 2), None)
        if isinstance(record.final_output, list) and not record.faults.fail:
            # Image models hand out their first files before finishing; so does the emulator.
            shown = record.final_output[: math.ceil(len(record.final_output) / 2)]
            record.output = shown
            record.published.update(list(record.files)[: len(shown)])
            event: WebhookEvent = "output"
        else:
            event = "logs"
        self._touch(record)
        if emit:
            self.webhooks.emit(record, event)

    def _complete(self, record: Record, at: float | None = None) -> None:
        self._log(record, _progress_line(PROGRESS_STEPS), None)
        if record.faults.fail:
            self.finish(record, "failed", record.faults.fail, at=at)
        else:
            if record.kind == "training":
                new_version = str(record.final_output["version"]).split(":")[1]
                self.remember_version(new_version, str(record.destination))
            self.finish(record, "succeeded", at=at)

    async def _watch_deadline(self, record: Record, seconds: float) -> None:
        """`Cancel-After`: abort if never started, cancel if running."""
        await asyncio.sleep(seconds)
        self.finish(record, "aborted" if record.status == "starting" else "canceled")

    # -- restart -------------------------------------------------------------------------

    def _restore(self, saved: SavedState) -> None:
        """Take over a saved state: terminal jobs stay, running ones catch up with the clock."""
        now = time.time()
        self._version_models.update(saved.version_models)
        restored = [record_from_saved(item) for item in saved.records]
        for record in restored:
            self._records[record.id] = record
            record.history.append({"type": "restored", "status": record.status, "time": now})
            self._touch(record)
        for record in restored:
            if record.terminal:
                # A terminal webhook that was still being retried goes out again, same id.
                self.webhooks.resend(record)
            else:
                self._render_soon(record)
                self._resume(record, now)
        log.info("restored %d jobs from %s", len(restored), self.config.state_file)

    def _resume(self, record: Record, now: float) -> None:
        start_due: float | None = None
        if record.status == "processing":
            if record.started_at is None:  # only a hand-edited file gets here
                record.started_at = record.created_at + record.starting_seconds
            start_due = record.started_at
        elif not record.faults.stay_starting:
            start_due = record.created_at + record.starting_seconds
        end_due = None if start_due is None else start_due + record.processing_seconds
        deadline = record.deadline
        if deadline is not None and deadline <= now and (end_due is None or deadline < end_due):
            # Cancel-After fired while we were down.
            self._catch_up(record, deadline, emit=False)
            status: Status = "aborted" if record.status == "starting" else "canceled"
            self.finish(record, status, at=deadline)
            return
        if end_due is not None and end_due <= now:
            # It should have finished while we were down: it finishes now, dated when it was due.
            self._catch_up(record, end_due, emit=False)
            self._complete(record, at=end_due)
            return
        self._catch_up(record, now, emit=True)
        runners = [self.tasks.spawn(self._run(record), name=f"lifecycle-{record.id}")]
        if deadline is not None:
            runners.append(self.tasks.spawn(self._watch_deadline(record, deadline - now)))
        self._runners[record.id] = runners

    def _catch_up(self, record: Record, until: float, *, emit: bool) -> None:
        """Apply the lifecycle steps that fell due by `until`, each dated when it was due."""
        if record.status == "starting" and not record.faults.stay_starting:
            start_due = record.created_at + record.starting_seconds
            if start_due <= until:
                self._start_processing(record, start_due, emit=emit)
        if record.status == "processing" and not record.halfway:
            assert record.started_at is not None
            if record.started_at + record.processing_seconds / 2 <= until:
                self._reach_halfway(record, emit=emit)

    # -- saving --------------------------------------------------------------------------

    def _touch(self, record: Record) -> None:
        """Note that `record` changed in a way worth saving."""
        self._changed.add(record.id)
        self._dirty.set()

    def _state_text(self) -> str:
        for job_id in self._changed:
            if (record := self._records.get(job_id)) is not None:
                self._encoded[job_id] = encode_record(record)
        self._changed.clear()
        encoded = [self._encoded[job_id] for job_id in self._records]
        return state_text(time.time(), dict(self._version_models), encoded)

    async def _save_loop(self) -> None:
        """Save soon after a change, then at most every SAVE_INTERVAL_SECONDS; last on close."""
        assert self._state_file is not None
        while not self._stopping.is_set():
            await self._dirty.wait()
            self._dirty.clear()
            try:
                # Encode on the loop (a consistent snapshot), write in a thread.
                await asyncio.to_thread(self._state_file.write, self._state_text())
            except Exception:  # a failed save must not stop the emulator; the next one retries
                log.exception("saving the emulator state to %s failed", self._state_file.path)
            try:
                async with asyncio.timeout(SAVE_INTERVAL_SECONDS):
                    await self._stopping.wait()
            except TimeoutError:
                pass
        try:
            self._state_file.write(self._state_text())
        except Exception:
            log.exception("saving the emulator state to %s failed", self._state_file.path)

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
    def _note_status(record: Record, at: float | None = None) -> None:
        # A step caught up after a restart is dated when it fell due, so it sorts before the
        # `restored` entry that precedes it in the list.
        when = time.time() if at is None else at
        record.history.append({"type": "status", "status": record.status, "time": when})


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.time()))


def _progress_line(done: int) -> str:
    """A tqdm-style line, which replicate-python's `Prediction.progress` knows how to parse."""
    percent = done * 100 // PROGRESS_STEPS
    bar = ("█" * (percent // 10)).ljust(10)
    return f"{percent:3d}%|{bar}| {done}/{PROGRESS_STEPS} [00:01<00:01, 25.00it/s]\n"
