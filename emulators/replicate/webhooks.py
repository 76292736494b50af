"""Standard Webhooks signing and delivery, with Replicate's event, throttle and retry rules.

Each job has an outbox drained by one worker task, so its webhooks leave in the order they
happened (the `reorder_webhooks` fault changes the order on purpose). Only the terminal
(`completed`) message is retried; the others get one attempt and failures are only recorded,
as Replicate and Cog do. Until it is delivered or given up on, the terminal message is kept on
its record (`pending_webhook`), so a restarted emulator sends it again with the same id.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from emulators.replicate.config import EmulatorConfig
from emulators.replicate.models import ALL_EVENTS, WebhookEvent
from emulators.replicate.records import PendingWebhook, Record
from emulators.replicate.stats import Stats
from emulators.replicate.tasks import TaskSet

PROGRESS_EVENTS: frozenset[str] = frozenset({"output", "logs"})
THROTTLE_SECONDS = 0.5
USER_AGENT = "replicate-emulator/1.0"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_message_id() -> str:
    """`msg_` and 27 base62 characters, the shape Svix-style senders use."""
    return "msg_" + "".join(_ALPHABET[b % len(_ALPHABET)] for b in os.urandom(27))


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body"))."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@dataclass
class WebhookMessage:
    """One logical webhook; retries and duplicates reuse its id and body."""

    record: Record
    event: WebhookEvent
    msg_id: str
    body: bytes
    status: str
    terminal: bool
    enqueued_at: float = field(default_factory=time.time)


@dataclass
class Outbox:
    queue: asyncio.Queue[WebhookMessage] = field(default_factory=asyncio.Queue)
    held: list[WebhookMessage] = field(default_factory=list)
    last_progress: float = float("-inf")
    worker: asyncio.Task[None] | None = None


class WebhookSender:
    """Turns job events into signed POSTs to the job's `webhook` URL."""

    def __init__(
        self,
        config: EmulatorConfig,
        client: httpx.AsyncClient,
        stats: Stats,
        tasks: TaskSet,
        on_change: Callable[[Record], None] = lambda record: None,
    ) -> None:
        self._config = config
        self._on_change = on_change  # told whenever a record's history or pending webhook changes
        self._key = config.webhook_key()
        self._client = client
        self._stats = stats
        self._tasks = tasks
        self._outboxes: dict[str, Outbox] = {}

    def reset(self) -> None:
        """Forget every outbox (their workers are cancelled with the emulator's TaskSet)."""
        self._outboxes.clear()

    def emit(self, record: Record, event: WebhookEvent) -> None:
        """Queue `event` for `record` if its filter, the throttle and the faults allow it."""
        if record.webhook is None:
            return
        if event not in (record.webhook_events_filter or ALL_EVENTS):
            return
        outbox = self._outboxes.setdefault(record.id, Outbox())
        terminal = event == "completed"
        if event in PROGRESS_EVENTS:
            now = time.monotonic()
            if now - outbox.last_progress < THROTTLE_SECONDS:
                self._stats.webhooks["throttled"] += 1
                record.history.append(
                    {"type": "webhook_throttled", "event": event, "time": time.time()}
                )
                self._on_change(record)
                return
            outbox.last_progress = now
        faults = record.faults
        status = record.status
        if faults.drop_webhooks or event in faults.drop_events:
            self._stats.webhooks["dropped"] += 1
            record.history.append({"type": "webhook_dropped", "event": event, "time": time.time()})
        else:
            message = WebhookMessage(
                record=record,
                event=event,
                msg_id=new_message_id(),
                body=json.dumps(record.to_json(), separators=(",", ":")).encode(),
                status=status,
                terminal=terminal,
            )
            self._stats.webhooks["messages"] += 1
            if terminal:
                record.pending_webhook = PendingWebhook(
                    event=event, msg_id=message.msg_id, body=message.body.decode(), status=status
                )
            if faults.reorder_webhooks and not terminal:
                outbox.held.append(message)
                return
            self._enqueue(record.id, outbox, message)
        if terminal:
            # The reorder fault delivers whatever it held back only after the terminal one.
            for held in outbox.held:
                self._enqueue(record.id, outbox, held)
            outbox.held.clear()
        self._on_change(record)

    def resend(self, record: Record) -> None:
        """Queue the record's undelivered terminal webhook again (after a restart), same id."""
        pending = record.pending_webhook
        if pending is None or record.webhook is None:
            return
        message = WebhookMessage(
            record=record,
            event=pending.event,
            msg_id=pending.msg_id,
            body=pending.body.encode(),
            status=pending.status,
            terminal=True,
        )
        self._stats.webhooks["messages"] += 1
        self._enqueue(record.id, self._outboxes.setdefault(record.id, Outbox()), message)

    def _enqueue(self, record_id: str, outbox: Outbox, message: WebhookMessage) -> None:
        outbox.queue.put_nowait(message)
        if outbox.worker is None:
            outbox.worker = self._tasks.spawn(
                self._drain(record_id, outbox), name=f"webhooks-{record_id}"
            )

    async def _drain(self, record_id: str, outbox: Outbox) -> None:
        while True:
            message = await outbox.queue.get()
            await self._deliver(message)
            if outbox.queue.empty():
                # Nothing awaits between this check and returning, so a new message can't slip
                # in unseen: `_enqueue` starts a fresh worker once this one is gone.
                outbox.worker = None
                return

    async def _deliver(self, message: WebhookMessage) -> None:
        faults = message.record.faults
        if faults.webhook_delay_seconds > 0:
            await asyncio.sleep(faults.webhook_delay_seconds)
        delays = self._config.webhook_retry_delays if message.terminal else []
        attempt = 1
        while not await self._attempt(message, attempt) and attempt <= len(delays):
            await asyncio.sleep(delays[attempt - 1])
            attempt += 1
        record = message.record
        if record.pending_webhook is not None and record.pending_webhook.msg_id == message.msg_id:
            record.pending_webhook = None  # delivered or given up on: nothing left to resend
            self._on_change(record)
        for _ in range(faults.duplicate_webhooks):
            await self._attempt(message, attempt=1, duplicate=True)

    async def _attempt(
        self, message: WebhookMessage, attempt: int, *, duplicate: bool = False
    ) -> bool:
        url = message.record.webhook
        assert url is not None
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": message.msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, message.msg_id, timestamp, message.body),
        }
        self._stats.webhooks["attempted"] += 1
        sent_at = time.time()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(url, content=message.body, headers=headers)
            status_code = response.status_code
        except Exception as exc:  # any failure to deliver is data for the test, never a crash
            error = f"{type(exc).__name__}: {exc}"
        ok = status_code is not None and 200 <= status_code < 300
        self._stats.webhooks["delivered" if ok else "failed"] += 1
        entry: dict[str, Any] = {
            "type": "webhook",
            "event": message.event,
            "webhook_id": message.msg_id,
            "attempt": attempt,
            "duplicate": duplicate,
            "prediction_status": message.status,
            "status_code": status_code,
            "error": error,
            "enqueued_at": message.enqueued_at,
            "sent_at": sent_at,
            "time": time.time(),
        }
        message.record.history.append(entry)
        self._on_change(message.record)
        return ok
