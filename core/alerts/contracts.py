"""What the alert workflows and their activities exchange: plain data, safe in the sandbox.

AlertSweepWorkflow (a Temporal Schedule) runs `alerts.evaluate`, which records the incidents it
finds and returns those with deliveries still owed; for each, it starts one
AlertDeliveryWorkflow whose id is derived from the incident key: Temporal refuses a second
workflow with that id, and each delivery is recorded per target before it counts as done.
"""

# No `from __future__ import annotations`: see core/contracts.py.

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

ALERT_SCHEDULE_ID = "autosync-alerts"
ALERT_SWEEP_WORKFLOW = "AlertSweepWorkflow"
ALERT_DELIVERY_WORKFLOW = "AlertDeliveryWorkflow"
# () -> AlertSweepResult
ALERT_EVALUATE = "alerts.evaluate"
# (AlertDeliverInput) -> str: "sent" | "already_sent" | "target_gone"
ALERT_DELIVER = "alerts.deliver"
# The delivery's non-retryable failure: a URL the outbound rules refuse, a 4xx answer.
ERR_ALERT_REFUSED = "AlertRefused"


class AlertKind(StrEnum):
    FAILURE_RATE = "failure_rate"  # a provider's failed share over ALERT_FAILURE_RATE
    STUCK_JOBS = "stuck_jobs"  # unfinished jobs past their kind's deadline
    SYNC_FAILED = "sync_failed"  # a sync run ended FAILED
    SYNC_OVERRUN = "sync_overrun"  # a sync run going longer than ALERT_SYNC_MAX_MINUTES
    PULL_CLIENT_INACTIVE = "pull_client_inactive"  # a pull client stopped being pulled
    STORAGE_ERROR = "storage_error"  # the storage probe (write, read back, delete) failed


# Conditions that come and go: one open incident at a time, a new one after it resolved.
RECURRING_KINDS = frozenset({AlertKind.FAILURE_RATE, AlertKind.STUCK_JOBS, AlertKind.STORAGE_ERROR})


def alert_delivery_workflow_id(incident_key: str) -> str:
    """One delivery workflow per incident, ever: the id is the key (hashed when long)."""
    if len(incident_key) <= 200:
        return f"alert-{incident_key}"
    return f"alert-{hashlib.sha256(incident_key.encode()).hexdigest()}"


@dataclass
class AlertToSend:
    incident_key: str
    summary: str = ""
    targets: list[str] = field(default_factory=list)  # AlertTarget.target_id still owed


@dataclass
class AlertSweepResult:
    opened: list[str] = field(default_factory=list)  # incident keys recorded by this sweep
    resolved: list[str] = field(default_factory=list)
    to_send: list[AlertToSend] = field(default_factory=list)


@dataclass
class AlertDeliveryInput:
    incident_key: str
    targets: list[str] = field(default_factory=list)


@dataclass
class AlertDeliverInput:
    incident_key: str
    target: str
