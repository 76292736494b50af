"""RecoveryWorkflow: one sweep for outputs at risk (see `core.recovery`); scheduled, or on demand."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.recovery import RecoveryActivities
    from core.recovery import RecoveryReport

RECOVERY_SCHEDULE_ID = "autosync-recovery"


@workflow.defn(name="RecoveryWorkflow")
class RecoveryWorkflow:
    @workflow.run
    async def run(self, dry_run: bool) -> RecoveryReport:
        report = await workflow.execute_activity_method(
            RecoveryActivities.sweep,
            dry_run,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary="check" if dry_run else "sweep",
        )
        acted = ", ".join(f"{n} {action}" for action, n in sorted(report.counts.items()))
        workflow.set_current_details(
            f"{'check' if dry_run else 'sweep'}: {report.checked} jobs looked at"
            + (f"; {acted}" if acted else "; nothing to do")
        )
        return report
