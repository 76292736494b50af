"""Record workflow histories for the replay tests: `python -m tests.workflows.record_histories`.

Run it only to ADD histories (e.g. after a new workflow path lands). Histories recorded by
older code must keep replaying: that is what guards determinism across changes.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.contracts import SEARCH_ATTRIBUTES, JobStatus, PollPolicy, ProviderEvent
from devstack.processes import temporal_cli_path
from tests.workflows import fakes
from tests.workflows.test_media_job import job, start, wait_for
from workflows.media_job import MediaJobWorkflow

HERE = Path(__file__).parent / "histories"


async def main() -> None:
    # The dev server, not the time-skipping one: it has our search attributes, so the
    # histories hold the upserts too.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(), search_attributes=SEARCH_ATTRIBUTES
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

            HERE.mkdir(exist_ok=True)
            for name, h in scenarios.items():
                history = await h.fetch_history()
                (HERE / f"media_job_{name}.json").write_text(history.to_json())
                print("recorded", name)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
