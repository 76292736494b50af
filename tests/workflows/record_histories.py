"""Record workflow histories for the replay tests: `python -m tests.workflows.record_histories`.

Run it only to ADD histories (e.g. after a new workflow path lands). Histories recorded by
older code must keep replaying: that is what guards determinism across changes.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.contracts import (
    SEARCH_ATTRIBUTES,
    JobStatus,
    PollPolicy,
    ProviderEvent,
    SyncMode,
    SyncRunInput,
)
from devstack.processes import temporal_cli_path
from tests.workflows import fakes
from tests.workflows.test_media_job import job, start, wait_for
from tests.workflows.test_sync_run import FakeUpstream
from workflows.media_job import MediaJobWorkflow
from workflows.sync_run import SyncRunWorkflow

HERE = Path(__file__).parent / "histories"


async def main() -> None:
    # The dev server, not the time-skipping one: it has our search attributes, so the
    # histories hold the upserts too.
    cli, keys = temporal_cli_path(), SEARCH_ATTRIBUTES
    env = await WorkflowEnvironment.start_local(  # dev_server_existing_path: no download
        dev_server_existing_path=cli, search_attributes=keys
    )
    fast: dict[str, Any] = {"search_attributes": True, "poll": PollPolicy(interval_seconds=0.3)}
    try:
        fake = fakes.FakeMedia()
        fake.on_poll = lambda n: fakes.PROCESSING if n < 2 else fakes.SUCCEEDED
        tq = f"rec-{uuid.uuid4()}"
        async with Worker(
            env.client, task_queue=tq, workflows=[MediaJobWorkflow], activities=fake.activities()
        ):
            scenarios = {}
            handle = await start(env.client, tq, job(**fast))
            await wait_for(handle, JobStatus.SUBMITTED)
            await handle.signal(
                MediaJobWorkflow.provider_event, ProviderEvent(snapshot=fakes.SUCCEEDED)
            )
            await handle.result()
            scenarios["webhook"] = handle

            handle = await start(env.client, tq, job(**fast))
            await handle.result()
            scenarios["poll"] = handle

            handle = await start(env.client, tq, job(**fast))
            await wait_for(handle, JobStatus.SUBMITTED)
            await handle.signal(MediaJobWorkflow.cancel, "recorded cancel")
            await handle.result()
            scenarios["cancel"] = handle

            handle = await start(
                env.client, tq, job(adopt_provider_job_id=fakes.PROVIDER_JOB_ID, **fast)
            )
            await handle.result()
            scenarios["adopt"] = handle

            # The workflow records the submit itself (after a scripted database outage).
            fake.record_errors = 2
            handle = await start(env.client, tq, job(**fast))
            await handle.result()
            scenarios["submit_recorded"] = handle

            upstream = FakeUpstream()
            sync_tq = f"rec-sync-{uuid.uuid4()}"
            async with Worker(
                env.client,
                task_queue=sync_tq,
                workflows=[SyncRunWorkflow],
                activities=upstream.activities(),
            ):
                upstream.fail_module = "estoque"
                upstream.rate_limited = 1
                run = SyncRunInput(
                    run_id=uuid.uuid4().hex, company_id="acme", mode=SyncMode.PERIOD,
                    modules=["vendas", "estoque"], start_date="2024-12-01",
                    end_date="2024-12-31", task_queue=sync_tq, search_attributes=True,
                )  # fmt: skip
                handle = await env.client.start_workflow(
                    SyncRunWorkflow.run, run, id=f"sync-run-{run.run_id}", task_queue=sync_tq
                )
                await handle.result()
                scenarios["sync_run"] = handle

                upstream.fail_module, upstream.pages = None, 6
                run = replace(run, run_id=uuid.uuid4().hex, pages_per_activity=2,
                              continue_after_events=20)  # fmt: skip
                handle = await env.client.start_workflow(
                    SyncRunWorkflow.run, run, id=f"sync-run-{run.run_id}", task_queue=sync_tq
                )
                await handle.result()
                # The first execution: it ends by continuing as new.
                scenarios["sync_run_continued"] = env.client.get_workflow_handle(
                    handle.id, run_id=handle.first_execution_run_id
                )

            HERE.mkdir(exist_ok=True)
            for name, h in scenarios.items():
                prefix = "" if name.startswith("sync") else "media_job_"
                path = HERE / f"{prefix}{name}.json"
                if path.exists():
                    print("kept", name)  # recorded by older code: what replay guards
                    continue
                history = await h.fetch_history()
                path.write_text(history.to_json())
                print("recorded", name)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
