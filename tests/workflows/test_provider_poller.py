"""ProviderPollerWorkflow and the stretched job timer, on the time-skipping test server.

The sweep activity is scripted here (tests/emulators/test_provider_poller.py runs the real one):
it signals the job's workflow as the real sweep does when it sees the job's phase move.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from core.contracts import (
    EVENT_FROM_POLLER,
    PROVIDER_POLL_SWEEP,
    JobStatus,
    PollPolicy,
    PollSweepRequest,
    PollSweepResult,
    ProviderEvent,
    ProviderPollerInput,
    media_job_workflow_id,
    provider_poller_workflow_id,
)
from tests.workflows import fakes
from tests.workflows.fakes import FakeMedia
from tests.workflows.test_media_job import job, start
from workflows.media_job import MediaJobWorkflow
from workflows.provider_poller import ProviderPollerWorkflow

POLICY = PollPolicy(interval_seconds=10, max_seconds=300, bulk_poller=True)
# The timers the workflow asks for (settings it schedules, not times anything took).
LAST_RESORT_TIMER = timedelta(seconds=POLICY.max_seconds)
EVERY_INTERVAL_TIMER = timedelta(seconds=POLICY.interval_seconds)


class ScriptedSweep:
    """Sees the job's prediction succeed at its `finish_on`-th sweep and signals it then."""

    def __init__(self, client: Client, job_id: str, finish_on: int) -> None:
        self.client, self.job_id, self.finish_on = client, job_id, finish_on
        self.sweeps = 0

    def activity(self) -> Any:
        @activity.defn(name=PROVIDER_POLL_SWEEP)
        async def sweep(request: PollSweepRequest) -> PollSweepResult:
            self.sweeps += 1
            if self.sweeps != self.finish_on:
                return PollSweepResult(in_flight=1, asked=1, provider_calls=1)
            handle = self.client.get_workflow_handle(media_job_workflow_id(self.job_id))
            await handle.signal(
                MediaJobWorkflow.provider_event,
                ProviderEvent(snapshot=fakes.SUCCEEDED, source=EVENT_FROM_POLLER),
            )
            return PollSweepResult(in_flight=1, asked=1, provider_calls=1, signalled=1)

        return sweep


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


async def timer_waits(handle: WorkflowHandle[Any, Any]) -> list[timedelta]:
    """What each timer of a workflow's history was started to wait."""
    waits: list[timedelta] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            waits.append(event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta())
    return waits


async def test_a_job_whose_webhooks_are_lost_is_finished_by_the_pollers_signal(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    media = FakeMedia()  # its own poll would only ever see `starting`
    inp = job(poll=POLICY)
    sweep = ScriptedSweep(env.client, inp.job_id, finish_on=3)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[MediaJobWorkflow, ProviderPollerWorkflow],
        activities=[*media.activities(), sweep.activity()],
    ):
        handle = await start(env.client, task_queue, inp)
        poller = await env.client.start_workflow(
            ProviderPollerWorkflow.run,
            ProviderPollerInput(provider="replicate", interval_seconds=10, sweeps_per_run=5),
            id=provider_poller_workflow_id(f"replicate-{uuid.uuid4().hex}"),
            task_queue=task_queue,
        )
        result = await handle.result()
        state = await handle.query(MediaJobWorkflow.state)
        await poller.terminate()
    # Both histories replay on this code (the job's with its stretch-poll-timers marker).
    replayer = Replayer(workflows=[MediaJobWorkflow, ProviderPollerWorkflow])
    await replayer.replay_workflow(await handle.fetch_history())
    await replayer.replay_workflow(await poller.fetch_history())

    assert result.status == JobStatus.SUCCEEDED
    assert [o.source_url for o in result.outputs] == fakes.SUCCEEDED.output_urls
    assert sweep.sweeps >= 3  # the job ended at the third; the poller sweeps on
    # Found by the poller: counted as a poll, and the job's own provider read never ran.
    assert (state.poll_count, state.webhook_count) == (1, 0)
    assert media.polls == 0
    assert await timer_waits(handle) == [LAST_RESORT_TIMER]


async def test_the_jobs_own_timer_stays_the_last_resort(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    media = FakeMedia(on_poll=lambda n: fakes.SUCCEEDED)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[MediaJobWorkflow],
        activities=media.activities(),
    ):
        handle = await start(env.client, task_queue, job(poll=POLICY))
        result = await handle.result()

    assert result.status == JobStatus.SUCCEEDED
    assert media.polls == 1
    assert await timer_waits(handle) == [LAST_RESORT_TIMER]


async def test_without_a_poller_the_job_polls_every_interval_as_before(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    media = FakeMedia(on_poll=lambda n: fakes.SUCCEEDED if n == 2 else fakes.STARTING)
    policy = PollPolicy(interval_seconds=10, max_seconds=300)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[MediaJobWorkflow],
        activities=media.activities(),
    ):
        handle = await start(env.client, task_queue, job(poll=policy))
        result = await handle.result()

    assert result.status == JobStatus.SUCCEEDED
    assert await timer_waits(handle) == [EVERY_INTERVAL_TIMER] * 2


async def test_the_poller_continues_as_new_after_its_sweeps(
    env: WorkflowEnvironment, task_queue: str
) -> None:
    sweep = ScriptedSweep(env.client, "nobody", finish_on=0)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[ProviderPollerWorkflow],
        activities=[sweep.activity()],
    ):
        poller = await env.client.start_workflow(
            ProviderPollerWorkflow.run,
            ProviderPollerInput(provider="replicate", interval_seconds=10, sweeps_per_run=2),
            id=provider_poller_workflow_id(f"replicate-{uuid.uuid4().hex}"),
            task_queue=task_queue,
        )
        first_run = poller.first_execution_run_id or (await poller.describe()).run_id
        for _ in range(200):
            if sweep.sweeps >= 3:
                break
            await env.sleep(timedelta(seconds=10))
        described = await env.client.get_workflow_handle(poller.id).describe()
        await poller.terminate()

    assert sweep.sweeps >= 3
    assert described.run_id != first_run
