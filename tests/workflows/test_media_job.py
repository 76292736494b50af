"""MediaJobWorkflow logic on the time-skipping test server, with scripted activities."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.contracts import (
    JobKind,
    JobStatus,
    MediaJobInput,
    PollPolicy,
    ProviderEvent,
    ProviderPhase,
    ProviderSnapshot,
)
from tests.workflows import fakes
from tests.workflows.fakes import FakeMedia
from workflows.media_job import PATCHES_BASELINE, MediaJobWorkflow, poll_delay


@pytest.fixture
async def media(env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str, FakeMedia]]:
    fake = FakeMedia()
    task_queue = f"tq-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[MediaJobWorkflow],
        activities=fake.activities(),
        max_heartbeat_throttle_interval=timedelta(seconds=1),
    ):
        yield env.client, task_queue, fake


TWO_RETRY_AFTERS = timedelta(minutes=1)


def job(kind: JobKind = JobKind.GENERATION, **kw: object) -> MediaJobInput:
    kw.setdefault("search_attributes", False)  # the time-skipping server has none
    kw.setdefault("provider", "replicate")
    return MediaJobInput(
        job_id=uuid.uuid4().hex,
        user_id="u1",
        kind=kind,
        model="black-forest-labs/flux-schnell",
        input={"prompt": "a red fox"},
        webhook_url="http://api/webhooks/replicate?job_id=x",
        **kw,  # type: ignore[arg-type]
    )


async def start(client: Client, task_queue: str, inp: MediaJobInput) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        MediaJobWorkflow.run, inp, id=f"media-job-{inp.job_id}", task_queue=task_queue
    )


async def wait_for(handle: WorkflowHandle[Any, Any], *statuses: JobStatus) -> None:
    for _ in range(400):
        state = await handle.query(MediaJobWorkflow.state)
        if state.status in statuses:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"workflow never reached {statuses}; last {state}")


def event(snapshot: ProviderSnapshot, webhook_id: str = "msg_1") -> ProviderEvent:
    return ProviderEvent(snapshot=snapshot, webhook_id=webhook_id)


async def test_webhook_finishes_the_job_without_polling(media) -> None:
    client, tq, fake = media
    handle = await start(client, tq, job())
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.SUCCEEDED))
    result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert [o.key for o in result.outputs] == [f"generated/u1/{handle.id[10:]}_0.png"]
    assert fake.polls == 0 and fake.submits == 1 and len(fake.stores) == 1
    # The copy knows whose outputs these are, so PROVIDER_OUTPUT_HOSTS can hold it to them.
    assert fake.stores[0].provider == job().provider != ""
    state = await handle.query(MediaJobWorkflow.state)
    assert state.webhook_count == 1 and state.poll_count == 0


async def test_a_new_job_records_one_patch_marker_for_all_its_patches(media) -> None:
    # Each patch marker also upserts TemporalChangeVersion, a visibility write on the server:
    # a job started on this code records the baseline once (older histories: test_replay).
    client, tq, _ = media
    handle = await start(client, tq, job(poll=PollPolicy(interval_seconds=3600, bulk_poller=True)))
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.SUCCEEDED))
    assert (await handle.result()).status == JobStatus.SUCCEEDED
    patches = [
        e.marker_recorded_event_attributes.details["patch-data"]
        for e in (await handle.fetch_history()).events
        if e.HasField("marker_recorded_event_attributes")
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]
    assert len(patches) == 1
    assert PATCHES_BASELINE.encode() in patches[0].payloads[0].data


async def test_every_webhook_lost_poll_finishes_the_job(media) -> None:
    client, tq, fake = media
    fake.on_poll = lambda n: fakes.PROCESSING if n < 3 else fakes.SUCCEEDED
    handle = await start(client, tq, job())
    result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert fake.polls == 3
    # The submit recorded by the workflow's own step, then the move to processing once,
    # before the final store.
    assert [r.status for r in fake.records] == [JobStatus.SUBMITTED, JobStatus.PROCESSING]


async def test_duplicate_and_out_of_order_events_change_nothing(media) -> None:
    client, tq, fake = media
    handle = await start(client, tq, job())
    await wait_for(handle, JobStatus.SUBMITTED)
    # terminal first, then a late "processing", then the terminal again (a retry)
    for snapshot in (fakes.SUCCEEDED, fakes.PROCESSING, fakes.SUCCEEDED, fakes.FAILED):
        await handle.signal(MediaJobWorkflow.provider_event, event(snapshot))
    result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert len(fake.stores) == 1
    assert (await handle.query(MediaJobWorkflow.state)).webhook_count == 4


async def test_event_of_another_provider_job_is_ignored(media) -> None:
    client, tq, fake = media
    fake.on_poll = lambda n: fakes.SUCCEEDED
    handle = await start(client, tq, job())
    await wait_for(handle, JobStatus.SUBMITTED)
    stray = fakes.snap("failed", ProviderPhase.FAILED, provider_job_id="other", error="x")
    await handle.signal(MediaJobWorkflow.provider_event, event(stray))
    assert (await handle.result()).status == JobStatus.SUCCEEDED


async def test_cancel_while_starting_reaches_the_provider(media) -> None:
    client, tq, fake = media
    handle = await start(client, tq, job())
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.cancel, "changed my mind")
    result = await handle.result()
    assert result.status == JobStatus.CANCELED
    assert result.error == "changed my mind"
    assert fake.cancels == [fakes.PROVIDER_JOB_ID]
    assert fake.stores == []
    assert fake.records[-1].status == JobStatus.CANCELED


async def test_cancel_while_processing_reaches_the_provider(media) -> None:
    client, tq, fake = media
    handle = await start(client, tq, job())
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.PROCESSING))
    await wait_for(handle, JobStatus.PROCESSING)
    await handle.signal(MediaJobWorkflow.cancel, "stop")
    assert (await handle.result()).status == JobStatus.CANCELED
    assert fake.cancels == [fakes.PROVIDER_JOB_ID]


async def test_cancel_during_submit_cancels_the_created_provider_job(media) -> None:
    client, tq, fake = media
    fake.submit_delay = 1.0
    handle = await start(client, tq, job())
    await asyncio.wait_for(fake.submit_started.wait(), 10)
    await handle.signal(MediaJobWorkflow.cancel, "too slow")
    assert (await handle.result()).status == JobStatus.CANCELED
    assert fake.submits == 1 and fake.cancels == [fakes.PROVIDER_JOB_ID]


async def test_cancel_while_storing_cancels_the_copy(media) -> None:
    client, tq, fake = media
    fake.store_blocks = True
    handle = await start(client, tq, job())
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.SUCCEEDED))
    await wait_for(handle, JobStatus.STORING)
    await asyncio.wait_for(fake.store_started.wait(), 10)
    await handle.signal(MediaJobWorkflow.cancel, "not needed")
    result = await handle.result()
    assert result.status == JobStatus.CANCELED
    assert fake.store_cancelled
    # the provider job had already finished: nothing to cancel there
    assert fake.cancels == []


async def test_provider_failure_fails_the_job_with_its_message(media) -> None:
    client, tq, fake = media
    handle = await start(client, tq, job())
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.FAILED))
    result = await handle.result()
    assert result.status == JobStatus.FAILED
    assert result.error == "CUDA out of memory"
    assert fake.records[-1].error == "CUDA out of memory"


async def test_rejected_input_fails_without_retry(media) -> None:
    client, tq, fake = media
    fake.submit_errors = [fakes.rejected("Invalid version or not permitted")]
    result = await (await start(client, tq, job())).result()
    assert result.status == JobStatus.FAILED
    assert result.error == "Invalid version or not permitted"
    assert fake.submits == 1


async def test_rate_limited_submit_waits_then_succeeds(media, env: WorkflowEnvironment) -> None:
    client, tq, fake = media
    fake.submit_errors = [fakes.rate_limited(30), fakes.rate_limited(30)]
    fake.on_poll = lambda n: fakes.SUCCEEDED
    before = await env.get_current_time()
    result = await (await start(client, tq, job())).result()
    assert result.status == JobStatus.SUCCEEDED
    assert fake.submits == 3
    waited = await env.get_current_time() - before
    assert waited >= TWO_RETRY_AFTERS  # two 429s, 30 s each, waited on durable timers


async def test_expired_output_fails_with_a_clear_error(media) -> None:
    client, tq, fake = media
    fake.store_error = fakes.expired()
    fake.on_poll = lambda n: fakes.SUCCEEDED
    result = await (await start(client, tq, job())).result()
    assert result.status == JobStatus.FAILED
    assert result.error is not None and "expired at the provider" in result.error
    assert len(fake.stores) == 1


async def test_training_of_six_hours_backs_off_its_polls(media, env: WorkflowEnvironment) -> None:
    client, tq, fake = media
    policy = PollPolicy(interval_seconds=10, backoff_after_seconds=120, max_seconds=900)
    # Poll n succeeds once the delays before it add up to six hours.
    elapsed, polls = 0.0, 0
    while elapsed < 6 * 3600:
        elapsed += poll_delay(policy, elapsed).total_seconds()
        polls += 1
    fake.on_poll = lambda n: (
        fakes.PROCESSING
        if n < polls
        else fakes.snap(
            "succeeded", ProviderPhase.SUCCEEDED, output_data={"version": "me/lora:abc"}
        )
    )
    before = await env.get_current_time()
    handle = await start(client, tq, job(JobKind.TRAINING, poll=policy))
    result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert result.output_data == {"version": "me/lora:abc"}
    assert await env.get_current_time() - before >= timedelta(hours=6)
    assert fake.polls == polls < 60  # backoff: far fewer than 6 h / 10 s = 2160 polls


def test_poll_delay_is_constant_then_grows_to_the_cap() -> None:
    policy = PollPolicy(interval_seconds=10, backoff_after_seconds=120, max_seconds=300)
    gaps = {elapsed: poll_delay(policy, elapsed) / timedelta(seconds=1)
            for elapsed in (0, 119, 220, 10_000)}  # fmt: skip
    assert gaps == {0: 10, 119: 10, 220: 60, 10_000: 300}


async def test_job_the_provider_forgot_fails_after_three_rejected_polls(media) -> None:
    client, tq, fake = media

    def forgotten(n: int) -> ProviderSnapshot:
        raise fakes.rejected("Not found.")

    fake.on_poll = forgotten
    result = await (await start(client, tq, job())).result()
    assert result.status == JobStatus.FAILED
    assert result.error is not None and "no longer knows this job" in result.error
    assert "Not found." in result.error
    assert fake.polls == 3


async def test_webhook_that_overtakes_the_submit_is_kept(media) -> None:
    client, tq, fake = media
    fake.submit_delay = 1.0
    fake.on_poll = lambda n: fakes.SUCCEEDED
    handle = await start(client, tq, job())
    await asyncio.wait_for(fake.submit_started.wait(), 10)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.PROCESSING))
    await wait_for(handle, JobStatus.PROCESSING)
    assert (await handle.result()).status == JobStatus.SUCCEEDED
    assert [r.status for r in fake.records][:2] == [JobStatus.SUBMITTED, JobStatus.PROCESSING]


async def test_the_workflow_records_the_submit_in_a_step_of_its_own(media) -> None:
    client, tq, fake = media
    fake.on_poll = lambda n: fakes.SUCCEEDED
    # The database is down when the submit returns: the write is retried, never the submit.
    fake.record_errors = 4
    result = await (await start(client, tq, job())).result()
    assert result.status == JobStatus.SUCCEEDED
    assert fake.submits == 1 and fake.record_failures == 4
    first = fake.records[0]
    assert first.status == JobStatus.SUBMITTED
    assert first.provider_job_id == fakes.PROVIDER_JOB_ID
    assert first.provider_status == fakes.STARTING.provider_status


async def test_a_cancel_during_the_submit_record_cancels_the_provider_job(media) -> None:
    client, tq, fake = media
    fake.record_errors = 3
    handle = await start(client, tq, job())
    await asyncio.wait_for(fake.submit_started.wait(), 10)
    await handle.signal(MediaJobWorkflow.cancel, "changed my mind")
    result = await handle.result()
    assert result.status == JobStatus.CANCELED
    assert fake.submits == 1 and fake.cancels == [fakes.PROVIDER_JOB_ID]
    assert [r.status for r in fake.records] == [JobStatus.SUBMITTED, JobStatus.CANCELED]


async def test_an_adopted_job_is_followed_from_a_first_poll_without_a_submit(media) -> None:
    client, tq, fake = media
    fake.on_poll = lambda n: fakes.SUCCEEDED
    handle = await start(client, tq, job(adopt_provider_job_id=fakes.PROVIDER_JOB_ID))
    result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert fake.submits == 0 and fake.polls == 1 and len(fake.stores) == 1
    assert fake.records[0].status == JobStatus.SUBMITTED
    assert fake.records[0].provider_job_id == fakes.PROVIDER_JOB_ID


async def test_an_adopted_job_the_provider_never_knew_fails_clearly(media) -> None:
    client, tq, fake = media

    def unknown(n: int) -> ProviderSnapshot:
        raise fakes.rejected("Not found.")

    fake.on_poll = unknown
    result = await (await start(client, tq, job(adopt_provider_job_id="nope"))).result()
    assert result.status == JobStatus.FAILED
    assert result.error is not None and "no longer knows this job" in result.error
    assert fake.submits == 0


FOREIGN = fakes.snap(
    "succeeded",
    ProviderPhase.SUCCEEDED,
    provider_job_id="someone-elses-prediction",
    output_urls=["https://attacker.example/forged.png"],
)


@pytest.mark.parametrize("when", ["during the submit", "during a 429 backoff"])
async def test_foreign_event_before_the_submit_returns_is_ignored(media, when: str) -> None:
    client, tq, fake = media
    if when == "during the submit":
        fake.submit_delay = 1.0
    else:
        fake.submit_errors = [fakes.rate_limited(30)]
    fake.on_poll = lambda n: fakes.SUCCEEDED
    handle = await start(client, tq, job())
    await asyncio.wait_for(fake.submit_started.wait(), 10)
    await handle.signal(MediaJobWorkflow.provider_event, event(FOREIGN))
    result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert [s.snapshot.provider_job_id for s in fake.stores] == [fakes.PROVIDER_JOB_ID]
    assert [o.source_url for o in result.outputs] == fakes.SUCCEEDED.output_urls
    assert (await handle.query(MediaJobWorkflow.state)).provider_job_id == fakes.PROVIDER_JOB_ID


async def test_matching_event_before_the_submit_returns_is_applied_after_it(media) -> None:
    client, tq, fake = media
    fake.submit_delay = 1.0
    fake.on_poll = lambda n: fakes.FAILED  # only the held event can make the job succeed
    handle = await start(client, tq, job())
    await asyncio.wait_for(fake.submit_started.wait(), 10)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.SUCCEEDED))
    result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert fake.polls == 0 and len(fake.stores) == 1


@pytest.mark.parametrize("own", [True, False])
async def test_adopted_job_takes_only_events_of_its_provider_job(media, own: bool) -> None:
    client, tq, fake = media
    fake.on_poll = lambda n: fakes.PROCESSING if n == 1 else fakes.FAILED
    inp = job(adopt_provider_job_id=fakes.PROVIDER_JOB_ID)
    # Signal-with-start: the event is handled before the workflow's code has run at all.
    handle = await client.start_workflow(
        MediaJobWorkflow.run,
        inp,
        id=f"media-job-{inp.job_id}",
        task_queue=tq,
        start_signal="provider_event",
        start_signal_args=[event(fakes.SUCCEEDED if own else FOREIGN)],
    )
    result = await handle.result()
    assert result.status == (JobStatus.SUCCEEDED if own else JobStatus.FAILED)
    assert [s.snapshot.provider_job_id for s in fake.stores] == (
        [fakes.PROVIDER_JOB_ID] if own else []
    )


# --- a submit whose earlier attempt may have created a provider job we can't look up ----------

ADOPTED_FROM_WEBHOOK = ProviderSnapshot(
    provider_job_id="req-made-by-the-lost-attempt",
    provider_status="OK",
    phase=ProviderPhase.SUCCEEDED,
    output_urls=["https://x/out-0.png"],
)


async def test_an_unconfirmed_submit_waits_for_the_webhook_and_follows_that_job(media) -> None:
    client, tq, fake = media
    fake.submit_errors = [fakes.unconfirmed()]
    fake.on_poll = lambda n: fakes.FAILED  # only the webhook can make the job succeed
    handle = await start(client, tq, job(provider="fal"))
    await asyncio.wait_for(fake.submit_started.wait(), 10)
    await asyncio.sleep(0.5)  # the workflow is waiting: nothing was created again meanwhile
    assert fake.submits == 1
    await handle.signal(MediaJobWorkflow.provider_event, event(ADOPTED_FROM_WEBHOOK))
    result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert fake.submits == 1 and fake.polls == 0
    assert [s.snapshot.provider_job_id for s in fake.stores] == [
        ADOPTED_FROM_WEBHOOK.provider_job_id
    ]
    assert fake.records[0].status == JobStatus.SUBMITTED
    assert fake.records[0].provider_job_id == ADOPTED_FROM_WEBHOOK.provider_job_id


async def test_an_unconfirmed_submit_fails_after_its_wait_without_creating_again(media) -> None:
    client, tq, fake = media
    fake.submit_errors = [fakes.unconfirmed()]
    handle = await start(client, tq, job(provider="kie"))
    result = await handle.result()  # the time-skipping server skips the wait
    assert result.status == JobStatus.FAILED
    assert "not submitted again" in (result.error or "")
    assert fake.submits == 1 and fake.stores == []


async def test_an_unconfirmed_submit_can_be_cancelled_while_it_waits(media) -> None:
    client, tq, fake = media
    fake.submit_errors = [fakes.unconfirmed()]
    handle = await start(client, tq, job(provider="fal"))
    await asyncio.wait_for(fake.submit_started.wait(), 10)
    await handle.signal(MediaJobWorkflow.cancel, "no longer needed")
    result = await handle.result()
    assert result.status == JobStatus.CANCELED
    assert fake.submits == 1 and fake.cancels == []


async def test_the_copy_runs_on_the_storage_queue_when_the_job_names_one(
    env: WorkflowEnvironment, media
) -> None:
    client, tq, fake = media
    copier = FakeMedia()
    storage_queue = f"storage-{uuid.uuid4()}"
    store = next(a for a in copier.activities() if a.__name__ == "store_outputs")
    async with Worker(client, task_queue=storage_queue, activities=[store]):
        handle = await start(client, tq, job(storage_task_queue=storage_queue))
        await wait_for(handle, JobStatus.SUBMITTED)
        await handle.signal(MediaJobWorkflow.provider_event, event(fakes.SUCCEEDED))
        result = await handle.result()
    assert result.status == JobStatus.SUCCEEDED
    assert len(copier.stores) == 1 and fake.stores == []


async def test_without_a_storage_queue_the_copy_stays_on_the_workflow_queue(media) -> None:
    client, tq, fake = media
    handle = await start(client, tq, job())
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.SUCCEEDED))
    assert (await handle.result()).status == JobStatus.SUCCEEDED
    assert len(fake.stores) == 1
