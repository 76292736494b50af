"""The emulator's memory: queued requests, the tasks that run them, cancels and expiry.

Everything runs on the server's single event loop, so state changes between two `await`s are
atomic and no locks are needed. Every completion goes through `finish`, which is idempotent:
a cancel, a forced completion and the normal end can race safely, and the one webhook is sent
by whichever comes first.

Each request waits `queue_seconds` from its submit, then runs `run_seconds` (both from the
config, or the request's faults). Its queue position counts the requests of the same app
submitted before it that still wait, 0 for the first in line.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import httpx

from emulators.fal.config import EmulatorConfig
from emulators.fal.models import ALL_STATUSES, Faults, Outcome
from emulators.fal.outputs import plan, seed_of
from emulators.fal.records import Failure, Record, new_request_id
from emulators.fal.signing import KeyRing
from emulators.fal.webhooks import webhook_message
from emulators.scaffold.emulator import EmulatorBase
from emulators.scaffold.inputs import FromInput, render
from emulators.scaffold.jobs import ProviderJob
from emulators.scaffold.stats import WEBHOOK_COUNTERS
from emulators.scaffold.webhooks import WebhookSender

CANCEL_REQUESTED = "CANCELLATION_REQUESTED"
ALREADY_COMPLETED = "ALREADY_COMPLETED"


REQUEST_KINDS = ("submit", "status", "result", "cancel", "file", "jwks", "other")


class Emulator(EmulatorBase[EmulatorConfig, Faults]):
    """An in-memory fal account."""

    def __init__(self, config: EmulatorConfig, http: httpx.AsyncClient) -> None:
        super().__init__(
            config, Faults, request_kinds=REQUEST_KINDS, webhook_counters=WEBHOOK_COUNTERS
        )
        self.keys = KeyRing.from_seed_hex(config.signing_key_seed)
        self.http = http
        self.webhooks = WebhookSender(http, self.stats, self.tasks, config.webhook_retry_delays)
        self._records: dict[str, Record] = {}
        # Waiting request ids per app, in submit order (dicts keep insertion order).
        self._queues: dict[str, dict[str, None]] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}

    # -- queries -------------------------------------------------------------------------

    def get(self, request_id: str) -> Record | None:
        record = self._records.get(request_id)
        if record is not None:
            self._expire_if_due(record)
        return record

    def queue_position(self, record: Record) -> int:
        waiting = self._queues.get(record.app_id, {})
        if record.id not in waiting:
            return 0
        return list(waiting).index(record.id)

    def stats_extra(self) -> dict[str, Any]:
        """Requests by queue status and completed ones by outcome."""
        statuses = Counter(record.status for record in self._records.values())
        outcomes = Counter(r.outcome for r in self._records.values() if r.outcome is not None)
        return {
            "queue": {status: statuses[status] for status in ALL_STATUSES},
            "outcomes": {outcome: outcomes[outcome] for outcome in ("ok", "error", "cancelled")},
        }

    def provider_jobs(self) -> Iterable[ProviderJob]:
        return (
            ProviderJob(r.id, r.webhook, r.status, r.outcome == "cancelled")
            for r in self._records.values()
        )

    # -- commands ------------------------------------------------------------------------

    def submit(
        self,
        *,
        model_id: str,
        app_id: str,
        payload: dict[str, Any],
        specific: Faults | None,
        webhook: str | None,
        base_url: str,
    ) -> Record:
        faults = self.faults.effective(specific)
        request_id = new_request_id()
        output = plan(request_id, model_id, payload, faults.file_bytes)
        record = Record(
            id=request_id,
            model_id=model_id,
            app_id=app_id,
            input=payload,
            base_url=base_url,
            faults=faults,
            webhook=webhook,
            files=output.files,
            queue_seconds=_pick(faults.queue_seconds, self.config.queue_seconds),
            run_seconds=_pick(faults.run_seconds, self.config.run_seconds),
        )
        record.template = output.payload
        record.source = output.source
        record.fill_payload()
        record.job_faults = self.faults.for_job(specific)
        self._records[request_id] = record
        self._queues.setdefault(app_id, {})[request_id] = None
        self._note_status(record)
        self._runners[request_id] = self.tasks.spawn(self._run(record), name=f"run-{request_id}")
        if output.source is None:
            record.rendered.set()
        else:
            self.tasks.spawn(self._render(record, output.source), name=f"render-{request_id}")
        return record

    def cancel(self, record: Record) -> str:
        """Remove a waiting request, signal a running one; fal's answer status."""
        if record.terminal:
            return ALREADY_COMPLETED
        record.cancel_requested = True
        record.history.append(
            {"type": "cancel_requested", "status": record.status, "time": time.time()}
        )
        if record.status == "IN_PROGRESS" and record.faults.ignore_cancel:
            record.log("Cancellation requested; the runner carries on")
        else:
            self.finish(record, "cancelled", Failure.cancelled())
        return CANCEL_REQUESTED

    def finish(self, record: Record, outcome: Outcome, failure: Failure | None = None) -> bool:
        """Complete the request and send its webhook; False if it already was complete."""
        if record.terminal:
            return False
        record.status = "COMPLETED"
        record.outcome = outcome
        record.failure = failure
        record.completed_at = time.time()
        self._queues.get(record.app_id, {}).pop(record.id, None)
        self._note_status(record)
        record.done.set()
        runner = self._runners.pop(record.id, None)
        if runner is not None and runner is not asyncio.current_task():
            runner.cancel()
        if record.webhook is not None:
            self.webhooks.send(webhook_message(self.config, self.keys, record))
        return True

    def expire(self, record: Record) -> None:
        """Drop the output files and the stored result now, as retention would later."""
        if not record.files_expired or not record.result_expired:
            record.files_expired = record.result_expired = True
            record.history.append({"type": "expired", "time": time.time()})

    def rotate_keys(self, *, keep_old: bool) -> None:
        self.keys.rotate(keep_old=keep_old)

    def forget(self) -> None:
        """Forget every request (the signing keys stay)."""
        self._records.clear()
        self._queues.clear()
        self._runners.clear()
        self.webhooks.forget()

    # -- lifecycle -----------------------------------------------------------------------

    async def _run(self, record: Record) -> None:
        if record.faults.stay_queued:
            await asyncio.Event().wait()  # until cancelled or forced complete
        await _sleep_until(record.created_at + record.queue_seconds)
        record.status = "IN_PROGRESS"
        record.started_at = time.time()
        self._queues.get(record.app_id, {}).pop(record.id, None)
        self._note_status(record)
        record.log(
            f"Starting inference of {record.model_id} (seed {seed_of(record.id, record.input)})"
        )
        await _sleep_until(record.started_at + record.run_seconds / 2)
        record.log("50% done")
        await _sleep_until(record.started_at + record.run_seconds)
        record.log("100% done")
        await record.rendered.wait()
        faults = record.faults
        if faults.fail:
            failure = Failure.model_error(
                faults.fail, faults.fail_status_code, faults.fail_error_type
            )
            self.finish(record, "error", failure)
        else:
            self.finish(record, "ok")

    async def _render(self, record: Record, source: FromInput) -> None:
        """Make the request's PNGs from its input image (see `scaffold.inputs`)."""
        record.files, entry = await render(self.http, record.files, source)
        record.history.append(entry)
        record.source = None
        record.fill_payload()
        record.rendered.set()

    def _expire_if_due(self, record: Record) -> None:
        # Lazy: expiry needs no timer, it is noticed by whoever looks next.
        if record.completed_at is None:
            return
        age = time.time() - record.completed_at
        faults = record.faults
        if not record.files_expired and age >= _pick(
            faults.file_ttl_seconds, self.config.file_ttl_seconds
        ):
            record.files_expired = True
            record.history.append({"type": "files_expired", "time": time.time()})
        if not record.result_expired and age >= _pick(
            faults.result_ttl_seconds, self.config.result_ttl_seconds
        ):
            record.result_expired = True
            record.history.append({"type": "result_expired", "time": time.time()})

    @staticmethod
    def _note_status(record: Record) -> None:
        record.history.append({"type": "status", "status": record.status, "time": time.time()})


def _pick(specific: float | None, default: float) -> float:
    return default if specific is None else specific


async def _sleep_until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.time()))
