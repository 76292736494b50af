"""Pull-sync workflows (seed 004): a cycle over every registered client, and the cleanup.

One cycle workflow per tick, not one per client: it plans the clients into batches and runs
one activity per batch (a few at a time; each pulls its clients with bounded concurrency), so
1,000 clients cost a dozen activities every 30 s instead of 1,000 workflows. A Temporal
Schedule starts it (`core.pull_schedules`); the REST API starts it on demand too.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from core.pull_contracts import (
        ACT_BATCH,
        ACT_CLEANUP,
        ACT_FINISH,
        ACT_PLAN,
        CLEANUP_WORKFLOW,
        CYCLE_WORKFLOW,
        BatchResult,
        ClientResult,
        CycleRecord,
        CycleSummary,
        PullBatch,
        PullCycleInput,
        PullPlan,
    )

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
# Set by Temporal on workflows a Schedule starts: when this run was due.
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


@workflow.defn(name=CYCLE_WORKFLOW)
class PullSyncCycleWorkflow:
    @workflow.run
    async def run(self, cycle: PullCycleInput) -> CycleSummary:
        info = workflow.info()
        started = workflow.now()
        cycle_id = f"{info.workflow_id}/{info.run_id}"
        plan = await workflow.execute_activity(
            ACT_PLAN,
            cycle.mode,
            result_type=PullPlan,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )
        gate = asyncio.Semaphore(max(1, plan.parallel_batches))

        async def batch(client_ids: list[str]) -> BatchResult:
            async with gate:
                result: BatchResult = await workflow.execute_activity(
                    ACT_BATCH,
                    PullBatch(cycle_id=cycle_id, mode=cycle.mode, client_ids=client_ids),
                    result_type=BatchResult,
                    # A pull is bounded by its timeouts; the heartbeat finds a dead worker.
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=timedelta(seconds=30),
                    retry_policy=RETRY,
                    summary=f"{len(client_ids)} clients",
                )
                return result

        batches = await asyncio.gather(*(batch(ids) for ids in plan.batches))
        results: list[ClientResult] = [r for b in batches for r in b.results]
        done = [r for r in results if not r.skipped]
        summary = CycleSummary(
            cycle_id=cycle_id,
            mode=cycle.mode,
            clients=len(results),
            ok=sum(1 for r in done if r.ok),
            failed=sum(1 for r in done if not r.ok),
            skipped=len(results) - len(done),
            stored=sum(r.stored for r in results),
            results=results,
        )
        summary.lag_seconds = await workflow.execute_activity(
            ACT_FINISH,
            CycleRecord(
                cycle_id=cycle_id, mode=cycle.mode,
                scheduled_at=info.typed_search_attributes.get(SCHEDULED_START),
                started_at=started, clients=summary.clients, ok=summary.ok,
                failed=summary.failed, stored=summary.stored,
            ),
            result_type=float,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )  # fmt: skip
        workflow.set_current_details(
            f"{cycle.mode}: {summary.clients} clients, {summary.ok} ok, {summary.failed} failed, "
            f"{summary.stored} records stored"
        )
        return summary


@workflow.defn(name=CLEANUP_WORKFLOW)
class PullSyncCleanupWorkflow:
    @workflow.run
    async def run(self) -> dict[str, int]:
        removed: dict[str, int] = await workflow.execute_activity(
            ACT_CLEANUP,
            result_type=dict[str, int],
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RETRY,
        )
        return removed
