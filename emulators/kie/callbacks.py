"""Completion callbacks: one POST to the task's `callBackUrl` when it succeeds or fails.

Body (UNCONFIRMED in KIE's docs; the code samples read it so): `{code, msg, data}` where `data`
is recordInfo's `data`. Success sends code 200, failure code 501 ("Generation Failed") with the
task's `failMsg`. Some KIE samples read `data.task_id`, so the `callback_task_id_key` fault can
send that spelling instead of `taskId`.

Signature (when the account has a `webhookHmacKey`): `X-Webhook-Timestamp` (Unix seconds) and
`X-Webhook-Signature` = base64(HMAC-SHA256(key, f"{taskId}.{timestamp}")). It covers the task id
and the time only, never the body, which is exactly what the `lie_in_callback` fault exploits.

Retries: KIE's policy is UNCONFIRMED; the emulator retries a failed attempt (connection error or
non-2xx) after each of `callback_retry_delays`, with a fresh timestamp and signature each time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx

from emulators.kie.clock import Clock
from emulators.kie.config import EmulatorConfig
from emulators.kie.records import Task, result_json
from emulators.kie.stats import Stats
from emulators.replicate.tasks import TaskSet

USER_AGENT = "kie-emulator/1"
FORGED_HOST = "https://forged.invalid"


def sign(key: str, task_id: str, timestamp: int) -> str:
    """KIE's callback signature: base64 of HMAC-SHA256 over `taskId.timestamp`."""
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def callback_body(task: Task) -> dict[str, Any]:
    """What the callback says, including the lie when the task's faults ask for one."""
    data = task.to_data()
    if task.faults.lie_in_callback:
        data.update(
            state="success",
            resultJson=result_json([f"{FORGED_HOST}/{task.id}/{name}" for name in task.files]),
            failCode="",
            failMsg="",
        )
    if task.faults.callback_task_id_key == "task_id":
        data["task_id"] = data.pop("taskId")
    if data["state"] == "success":
        return {"code": 200, "msg": "Playground task completed successfully.", "data": data}
    return {"code": 501, "msg": data["failMsg"] or "Generation Failed", "data": data}


class CallbackSender:
    """Turns a finished task into (signed) POSTs to its `callBackUrl`."""

    def __init__(
        self,
        config: EmulatorConfig,
        client: httpx.AsyncClient,
        stats: Stats,
        tasks: TaskSet,
        clock: Clock,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._client = client
        self._stats = stats
        self._tasks = tasks
        self._clock = clock
        self._wall_clock = wall_clock

    def emit(self, task: Task) -> None:
        """Send the completion callback in the background, as the faults allow."""
        if task.callback_url is None:
            return
        if task.faults.drop_callbacks:
            self._stats.callbacks["dropped"] += 1
            task.history.append({"type": "callback_dropped", "time": self._clock.now()})
            return
        body = callback_body(task)
        self._stats.callbacks["messages"] += 1
        if task.faults.lie_in_callback:
            self._stats.callbacks["lies"] += 1
        self._tasks.spawn(self._deliver(task, body), name=f"callback-{task.id}")

    async def _deliver(self, task: Task, body: dict[str, Any]) -> None:
        faults = task.faults
        if faults.callback_delay_seconds > 0:
            await self._clock.sleep(faults.callback_delay_seconds)
        delays = self._config.callback_retry_delays
        attempt = 1
        while not await self._attempt(task, body, attempt) and attempt <= len(delays):
            await self._clock.sleep(delays[attempt - 1])
            attempt += 1
        for _ in range(faults.duplicate_callbacks):
            self._stats.callbacks["duplicates"] += 1
            await self._attempt(task, body, attempt=1, duplicate=True)

    def _headers(self, task: Task) -> dict[str, str]:
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        key = self._config.webhook_hmac_key
        faults = task.faults
        if not key or faults.omit_callback_signature:
            return headers
        # Real time, not the emulator's clock: the receiver checks it against its own.
        timestamp = int(self._wall_clock() + faults.callback_timestamp_skew_seconds)
        if faults.callback_bad_signature:
            key = key + "-not-the-account-key"
        headers["X-Webhook-Timestamp"] = str(timestamp)
        headers["X-Webhook-Signature"] = sign(key, task.id, timestamp)
        return headers

    async def _attempt(
        self, task: Task, body: dict[str, Any], attempt: int, *, duplicate: bool = False
    ) -> bool:
        assert task.callback_url is not None
        self._stats.callbacks["attempted"] += 1
        status_code: int | None = None
        error: str | None = None
        sent_at = self._clock.now()
        try:
            response = await self._client.post(
                task.callback_url, json=body, headers=self._headers(task)
            )
            status_code = response.status_code
        except Exception as exc:  # any failure to deliver is data for the test, never a crash
            error = f"{type(exc).__name__}: {exc}"
        ok = status_code is not None and 200 <= status_code < 300
        self._stats.callbacks["delivered" if ok else "failed"] += 1
        task.history.append(
            {
                "type": "callback",
                "attempt": attempt,
                "duplicate": duplicate,
                "claimed_state": body["data"]["state"],
                "lie": task.faults.lie_in_callback,
                "status_code": status_code,
                "error": error,
                "sent_at": sent_at,
                "time": self._clock.now(),
            }
        )
        return ok
