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
Delivery and the webhook faults are the scaffold's `WebhookSender`, on the emulator's clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from emulators.kie.config import EmulatorConfig
from emulators.kie.records import Task, result_json
from emulators.scaffold.webhooks import Message

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


def callback_message(
    config: EmulatorConfig,
    task: Task,
    wall_clock: Callable[[], float] = time.time,
) -> Message:
    """The completion callback of a finished task (its `callBackUrl` must be set)."""
    assert task.callback_url is not None
    body = callback_body(task)
    # As httpx's `json=` writes it.
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()

    def headers() -> dict[str, str]:
        found = {"content-type": "application/json", "user-agent": USER_AGENT}
        key = config.webhook_hmac_key
        faults = task.faults
        if not key or faults.omit_callback_signature:
            return found
        # Real time, not the emulator's clock: the receiver checks it against its own.
        timestamp = int(wall_clock() + faults.callback_timestamp_skew_seconds)
        if faults.callback_bad_signature:
            key = key + "-not-the-account-key"
        found["X-Webhook-Timestamp"] = str(timestamp)
        found["X-Webhook-Signature"] = sign(key, task.id, timestamp)
        return found

    entry = {"claimed_state": body["data"]["state"], "lie": task.faults.lie_in_callback}
    return Message(job=task, url=task.callback_url, body=raw, headers=headers, entry=entry)
