"""The one terminal webhook per request, signed with Ed25519.

fal POSTs to `fal_webhook` once the request is done and retries failures ("10 times in the
span of 2 hours"; the schedule is `EmulatorConfig.webhook_retry_delays`); delivery, retries and
the webhook faults are the scaffold's `WebhookSender`. Every attempt is signed afresh, so its
`X-Fal-Webhook-Timestamp` is current; duplicates (a fault) repeat the same body.
"""

from __future__ import annotations

import json
import time

from emulators.fal.config import EmulatorConfig
from emulators.fal.records import Record
from emulators.fal.signing import (
    HEADER_REQUEST_ID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    HEADER_USER_ID,
    KeyRing,
)
from emulators.scaffold.webhooks import Message

USER_AGENT = "fal-emulator/1.0"


def webhook_message(config: EmulatorConfig, keys: KeyRing, record: Record) -> Message:
    """The terminal webhook of a completed request (its `webhook` URL must be set)."""
    assert record.webhook is not None
    body = json.dumps(record.webhook_json(), separators=(",", ":")).encode()

    def headers() -> dict[str, str]:
        return signed_headers(config, keys, record, body, int(time.time()))

    return Message(job=record, url=record.webhook, body=body, headers=headers)


def signed_headers(
    config: EmulatorConfig, keys: KeyRing, record: Record, body: bytes, timestamp: int
) -> dict[str, str]:
    key = keys.stranger if record.faults.webhook_wrong_key else keys.current
    user_id = config.user_id
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        HEADER_REQUEST_ID: record.id,
        HEADER_USER_ID: user_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: key.sign(record.id, user_id, timestamp, body),
    }
