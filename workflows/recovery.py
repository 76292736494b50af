"""RecoveryWorkflow: one sweep for outputs at risk (see `core.recovery`); scheduled, or on demand."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.recovery import RECOVERY_SWEEP, RecoveryReport
    from workflows.policies import SWEEP_RETRY

RECOVERY_SCHEDULE_ID = "autosync-recovery"


@workflow.defn(name="RecoveryWorkflow")
class RecoveryWorkflow:
    @workflow.run
    async def run(self, dry_run: bool) -> RecoveryReport:
        report: RecoveryReport = await workflow.execute_activity(
            RECOVERY_SWEEP,
            dry_run,
            result_type=RecoveryReport,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=SWEEP_RETRY,
            summary="check" if dry_run else "sweep",
        )
        acted = ", ".join(f"{n} {action}" for action, n in sorted(report.counts.items()))
        workflow.set_current_details(
            f"{'check' if dry_run else 'sweep'}: {report.checked} jobs looked at"
            + (f"; {acted}" if acted else "; nothing to do")
        )
        return report
