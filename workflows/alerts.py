"""Alerts: AlertSweepWorkflow (on a Temporal Schedule) finds incidents; AlertDeliveryWorkflow
sends one incident to every target, with retries.

Never twice for one incident: the sweep's activity records each incident once under its key
(`core.alerts.incidents`), the delivery workflow's id is derived from that key (Temporal refuses
a second one while it runs, and after it completed: ALLOW_DUPLICATE_FAILED_ONLY), and each
target's send is recorded before the activity returns, so a later workflow skips it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from core.alerts.contracts import (
        ALERT_DELIVER,
        ALERT_DELIVERY_WORKFLOW,
        ALERT_EVALUATE,
        ALERT_SWEEP_WORKFLOW,
        ERR_ALERT_REFUSED,
        AlertDeliverInput,
        AlertDeliveryInput,
        AlertSweepResult,
        alert_delivery_workflow_id,
    )
    from workflows.policies import describe_failure

EVALUATE_RETRY = RetryPolicy(maximum_attempts=3)
# A receiver that is down is tried again for about a day (backoff up to 10 minutes).
DELIVER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=150,
    non_retryable_error_types=[ERR_ALERT_REFUSED],
)


@workflow.defn(name=ALERT_SWEEP_WORKFLOW)
class AlertSweepWorkflow:
    @workflow.run
    async def run(self) -> AlertSweepResult:
        result: AlertSweepResult = await workflow.execute_activity(
            ALERT_EVALUATE,
            result_type=AlertSweepResult,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=EVALUATE_RETRY,
        )
        started = 0
        for item in result.to_send:
            try:
                await workflow.start_child_workflow(
                    ALERT_DELIVERY_WORKFLOW,
                    AlertDeliveryInput(incident_key=item.incident_key, targets=item.targets),
                    id=alert_delivery_workflow_id(item.incident_key),
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    static_summary=item.summary[:200] or None,
                )
                started += 1
            except WorkflowAlreadyStartedError:
                pass  # being delivered, or delivered: never a second workflow
        workflow.set_current_details(
            f"{len(result.opened)} opened, {len(result.resolved)} resolved, "
            f"{started} deliveries started"
        )
        return result


@workflow.defn(name=ALERT_DELIVERY_WORKFLOW)
class AlertDeliveryWorkflow:
    @workflow.run
    async def run(self, params: AlertDeliveryInput) -> dict[str, str]:
        """Send the incident to each target at once; each target's outcome by its id."""

        async def one(target: str) -> str:
            try:
                outcome: str = await workflow.execute_activity(
                    ALERT_DELIVER,
                    AlertDeliverInput(incident_key=params.incident_key, target=target),
                    result_type=str,
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=DELIVER_RETRY,
                )
                return outcome
            except ActivityError as exc:  # refused for good: reported, the others go on
                return f"failed: {describe_failure(exc)}"

        outcomes = await asyncio.gather(*(one(t) for t in params.targets))
        return dict(zip(params.targets, outcomes, strict=True))
