"""Pull-sync workflows on the time-skipping test server: the cycle's fan-out and figures with
scripted activities, then with the real activities against the emulator, including a batch
cut off mid-pull and retried (every record stored once), and the cleanup workflow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.pull_contracts import (
    ACT_BATCH,
    ACT_CLEANUP,
    ACT_FINISH,
    ACT_PLAN,
    BatchResult,
    ClientResult,
    CycleRecord,
    CycleSummary,
    PullBatch,
    PullCycleInput,
    PullMode,
    PullPlan,
)
from tests.pull_sync.support import (
    activities,
    emulate,
    emulator_client,
    fetcher,
    register_emulated,
    set_faults,
    settings,
    stored,
    stored_total,
)
from workflows.pull_sync import PullSyncCleanupWorkflow, PullSyncCycleWorkflow

# What the scripted finish_cycle reports as the cycle's lag.
SCRIPTED_LAG = 0.5


def scripted(parallel: int, batches: int) -> tuple[list[Callable[..., Any]], dict[str, Any]]:
    seen: dict[str, Any] = {"in_flight": 0, "max_in_flight": 0, "finished": []}

    @activity.defn(name=ACT_PLAN)
    async def plan(mode: str) -> PullPlan:
        return PullPlan(
            batches=[[f"c{b}-{n}" for n in range(3)] for b in range(batches)],
            parallel_batches=parallel,
        )

    @activity.defn(name=ACT_BATCH)
    async def batch(request: PullBatch) -> BatchResult:
        seen["in_flight"] += 1
        seen["max_in_flight"] = max(seen["max_in_flight"], seen["in_flight"])
        await asyncio.sleep(0.05)
        seen["in_flight"] -= 1
        return BatchResult(
            results=[
                ClientResult(client_id=c, ok=not c.endswith("-2"), stored=2, error=None)
                for c in request.client_ids
            ]
        )

    @activity.defn(name=ACT_FINISH)
    async def finish(cycle: CycleRecord) -> float:
        seen["finished"].append(cycle)
        return SCRIPTED_LAG

    return [plan, batch, finish], seen


async def test_cycle_fans_out_over_batches_a_few_at_a_time(env: WorkflowEnvironment) -> None:
    acts, seen = scripted(parallel=2, batches=5)
    queue = f"pull-{uuid.uuid4()}"
    async with Worker(
        env.client, task_queue=queue, workflows=[PullSyncCycleWorkflow], activities=acts
    ):
        summary = await env.client.execute_workflow(
            PullSyncCycleWorkflow.run,
            PullCycleInput(mode=PullMode.ALL.value, trigger="test"),
            id=f"pull-cycle-{uuid.uuid4()}",
            task_queue=queue,
        )
    assert isinstance(summary, CycleSummary)
    assert (summary.clients, summary.ok, summary.failed, summary.stored) == (15, 10, 5, 30)
    # The summary carries what finish_cycle reported (scripted), not a measured time.
    reported = summary.lag_seconds
    assert reported == SCRIPTED_LAG
    assert seen["max_in_flight"] == 2
    (record,) = seen["finished"]
    assert record.clients == 15 and record.scheduled_at is None
    assert isinstance(record.started_at, datetime)


async def test_cycle_with_the_real_activities_and_a_batch_cut_off_mid_pull(
    env: WorkflowEnvironment,
    control: httpx.Client,
    pull_client_url: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ids = {}
    for name in ("alpha", "beta", "gamma"):
        emulate(control, name, 5)
        ids[name] = await register_emulated(sessions, pull_client_url, name)
    set_faults(control, "gamma", slow=True)  # held until the first attempt is cut off
    config = settings(pull_sync_batch_size=10)
    async with fetcher(config) as http:
        real = activities(sessions, http, config)

        @activity.defn(name=ACT_BATCH)
        async def batch(request: PullBatch) -> BatchResult:
            if activity.info().attempt == 1:
                # The worker "dies" while gamma's pull is under way: alpha and beta stored
                # and acknowledged, gamma not; the retry pulls the batch again.
                try:
                    await asyncio.wait_for(real.pull_batch(request), timeout=0.5)
                except TimeoutError:
                    pass
                set_faults(control, "gamma")
                raise ApplicationError("worker lost")
            return await real.pull_batch(request)

        queue = f"pull-{uuid.uuid4()}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[PullSyncCycleWorkflow],
            activities=[real.plan, batch, real.finish_cycle],
        ):
            summary = await env.client.execute_workflow(
                PullSyncCycleWorkflow.run,
                PullCycleInput(),
                id=f"pull-cycle-{uuid.uuid4()}",
                task_queue=queue,
            )
    assert (summary.clients, summary.ok, summary.failed) == (3, 3, 0)
    assert await stored_total(sessions) == 15
    for name, our_id in ids.items():
        assert len(await stored(sessions, our_id)) == 5
        assert emulator_client(control, name)["pending"] == 0


async def test_cleanup_workflow_runs_the_cleanup(env: WorkflowEnvironment) -> None:
    @activity.defn(name=ACT_CLEANUP)
    async def cleanup() -> dict[str, int]:
        return {"clients": 2, "attempts": 10, "cycles": 1}

    queue = f"pull-{uuid.uuid4()}"
    async with Worker(
        env.client, task_queue=queue, workflows=[PullSyncCleanupWorkflow], activities=[cleanup]
    ):
        removed = await env.client.execute_workflow(
            PullSyncCleanupWorkflow.run, id=f"pull-cleanup-{uuid.uuid4()}", task_queue=queue
        )
    assert removed == {"clients": 2, "attempts": 10, "cycles": 1}
