"""The one terminal webhook per request: signed with Ed25519, retried, faults applied.

fal POSTs to `fal_webhook` once the request is done and retries failures ("10 times in the
span of 2 hours"; the schedule is `EmulatorConfig.webhook_retry_delays`). A connection error,
a timeout and any non-2xx answer count as failures. Every attempt is signed afresh, so its
`X-Fal-Webhook-Timestamp` is current; duplicates (a fault) repeat the same body.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from emulators.fal.config import EmulatorConfig
from emulators.fal.records import Record
from emulators.fal.signing import (
    HEADER_REQUEST_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEADER_USER_ID,
    KeyRing,
)
from emulators.fal.stats import Stats
from emulators.replicate.tasks import TaskSet

USER_AGENT = "fal-emulator/1.0"


class WebhookSender:
    """Turns a request's completion into signed POSTs to its `fal_webhook` URL."""

    def __init__(
        self,
        config: EmulatorConfig,
        client: httpx.AsyncClient,
        keys: KeyRing,
        stats: Stats,
        tasks: TaskSet,
    ) -> None:
        self._config = config
        self._client = client
        self._keys = keys
        self._stats = stats
        self._tasks = tasks

    def emit(self, record: Record) -> None:
        """Queue the terminal webhook of `record` (call once, when it completes)."""
        if record.webhook is None:
            return
        if record.faults.drop_webhooks:
            self._stats.webhooks["dropped"] += 1
            record.history.append({"type": "webhook_dropped", "time": time.time()})
            return
        body = json.dumps(record.webhook_json(), separators=(",", ":")).encode()
        self._stats.webhooks["messages"] += 1
        self._tasks.spawn(self._deliver(record, body), name=f"webhook-{record.id}")

    async def _deliver(self, record: Record, body: bytes) -> None:
        faults = record.faults
        if faults.webhook_delay_seconds > 0:
            await asyncio.sleep(faults.webhook_delay_seconds)
        delays = self._config.webhook_retry_delays
        attempt = 1
        while not await self._attempt(record, body, attempt) and attempt <= len(delays):
            await asyncio.sleep(delays[attempt - 1])
            attempt += 1
        for _ in range(faults.duplicate_webhooks):
            await self._attempt(record, body, attempt=1, duplicate=True)

    def headers(self, record: Record, body: bytes, timestamp: int) -> dict[str, str]:
        key = self._keys.stranger if record.faults.webhook_wrong_key else self._keys.current
        user_id = self._config.user_id
        return {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            HEADER_REQUEST_ID: record.id,
            HEADER_USER_ID: user_id,
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_SIGNATURE: key.sign(record.id, user_id, timestamp, body),
        }

    async def _attempt(
        self, record: Record, body: bytes, attempt: int, *, duplicate: bool = False
    ) -> bool:
        assert record.webhook is not None
        headers = self.headers(record, body, int(time.time()))
        self._stats.webhooks["attempted"] += 1
        sent_at = time.time()
        status_code: int | None = None
        error: str | None = None
        try:
            response = await self._client.post(record.webhook, content=body, headers=headers)
            status_code = response.status_code
        except Exception as exc:  # any failure to deliver is data for the test, never a crash
            error = f"{type(exc).__name__}: {exc}"
        ok = status_code is not None and 200 <= status_code < 300
        self._stats.webhooks["delivered" if ok else "failed"] += 1
        entry: dict[str, Any] = {
            "type": "webhook",
            "attempt": attempt,
            "duplicate": duplicate,
            "status_code": status_code,
            "error": error,
            "sent_at": sent_at,
            "time": time.time(),
        }
        record.history.append(entry)
        return ok
