"""Replicate's webhooks: Standard Webhooks signatures, event filter, progress throttle.

Delivery (one ordered outbox per job, retries of the terminal `completed` message only, the
webhook faults) is the scaffold's `WebhookSender`, as Replicate and Cog do it: progress
messages get one attempt. Until it is delivered or given up on, the terminal message is kept
on its record (`pending_webhook`), so a restarted emulator sends it again with the same id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable

import httpx

from emulators.replicate.config import EmulatorConfig
from emulators.replicate.models import ALL_EVENTS, WebhookEvent
from emulators.replicate.records import PendingWebhook, Record
from emulators.scaffold.stats import Stats
from emulators.scaffold.tasks import TaskSet
from emulators.scaffold.webhooks import Message, WebhookJob, WebhookSender

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


class Webhooks:
    """Turns job events into signed POSTs to the job's `webhook` URL (sent by the scaffold)."""

    def __init__(
        self,
        config: EmulatorConfig,
        client: httpx.AsyncClient,
        stats: Stats,
        tasks: TaskSet,
        on_change: Callable[[Record], None] = lambda record: None,
    ) -> None:
        self._key = config.webhook_key()
        self._stats = stats
        self._on_change = on_change  # told whenever a record's history or pending webhook changes
        self._last_progress: dict[str, float] = {}

        def changed(job: WebhookJob) -> None:
            assert isinstance(job, Record)
            on_change(job)

        self._sender = WebhookSender(
            client, stats, tasks, config.webhook_retry_delays, on_change=changed
        )

    def reset(self) -> None:
        """Forget every outbox (their workers are cancelled with the emulator's TaskSet)."""
        self._sender.forget()
        self._last_progress.clear()

    def emit(self, record: Record, event: WebhookEvent) -> None:
        """Queue `event` for `record` if its filter, the throttle and the faults allow it."""
        if record.webhook is None:
            return
        if event not in (record.webhook_events_filter or ALL_EVENTS):
            return
        terminal = event == "completed"
        if event in PROGRESS_EVENTS:
            now = time.monotonic()
            if now - self._last_progress.get(record.id, float("-inf")) < THROTTLE_SECONDS:
                self._stats.webhooks["throttled"] += 1
                record.history.append(
                    {"type": "webhook_throttled", "event": event, "time": time.time()}
                )
                self._on_change(record)
                return
            self._last_progress[record.id] = now
        body = json.dumps(record.to_json(), separators=(",", ":"))
        message = self._message(record, event, new_message_id(), body, record.status, terminal)
        faults = record.faults
        if terminal:
            record.pending_webhook = PendingWebhook(
                event=event, msg_id=message.entry["webhook_id"], body=body, status=record.status
            )
        sent = self._sender.send(message, drop=faults.drop_webhooks or event in faults.drop_events)
        if terminal and not sent:
            record.pending_webhook = None  # dropped: nothing to resend after a restart
        self._on_change(record)

    def resend(self, record: Record) -> None:
        """Queue the record's undelivered terminal webhook again (after a restart), same id."""
        pending = record.pending_webhook
        if pending is None or record.webhook is None:
            return
        message = self._message(
            record, pending.event, pending.msg_id, pending.body, pending.status, True
        )
        self._sender.send(message, drop=False)

    def _message(
        self,
        record: Record,
        event: WebhookEvent,
        msg_id: str,
        body: str,
        status: str,
        terminal: bool,
    ) -> Message:
        assert record.webhook is not None
        raw = body.encode()

        def headers() -> dict[str, str]:
            timestamp = int(time.time())
            return {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, msg_id, timestamp, raw),
            }

        def settled() -> None:
            if record.pending_webhook is not None and record.pending_webhook.msg_id == msg_id:
                record.pending_webhook = None  # delivered or given up on: nothing left to resend
                self._on_change(record)

        entry = {
            "event": event,
            "webhook_id": msg_id,
            "prediction_status": status,
            "enqueued_at": time.time(),
        }
        return Message(
            job=record,
            url=record.webhook,
            body=raw,
            headers=headers,
            terminal=terminal,
            entry=entry,
            settled=settled if terminal else None,
        )
