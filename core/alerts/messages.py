"""The bodies alerts are sent with, per target format.

- `standard`: a Standard Webhooks payload, `{"type": "alert.opened", "timestamp", "data"}`,
  signed by the sender (`webhook-id`, `webhook-timestamp`, `webhook-signature` headers);
- `slack`: Slack-compatible JSON, `{"text", "blocks"}` (an incoming webhook takes it as is);
  signed the same way when the target has a secret.

The message id is derived from the incident and the target, so a retried send carries the same
`webhook-id` and a receiver that remembers ids sees one message.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from core.models import AlertIncident

EVENT_TYPE = "alert.opened"


def message_id(incident_key: str, target: str) -> str:
    return "msg_" + hashlib.sha256(f"{incident_key}\n{target}".encode()).hexdigest()[:32]


def incident_data(incident: AlertIncident) -> dict[str, Any]:
    return {
        "key": incident.key,
        "kind": incident.kind,
        "subject": incident.subject,
        "summary": incident.summary,
        "detail": incident.detail or {},
        "opened_at": incident.opened_at.isoformat(),
    }


def body(incident: AlertIncident, fmt: Literal["standard", "slack"], now: datetime) -> bytes:
    data = incident_data(incident)
    if fmt == "slack":
        payload: dict[str, Any] = {
            "text": f"autosync alert: {incident.summary}",
            "blocks": [
                {
                    "type": "section",
                    "text": {"type": "mrkdwn", "text": f"*{incident.kind}*: {incident.summary}"},
                },
                {
                    "type": "context",
                    "elements": [
                        {
                            "type": "mrkdwn",
                            "text": f"{incident.subject} · opened {data['opened_at']} · "
                            f"`{incident.key}`",
                        }
                    ],
                },
            ],
        }
    else:
        payload = {"type": EVENT_TYPE, "timestamp": now.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), default=str).encode()
