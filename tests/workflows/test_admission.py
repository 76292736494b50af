"""Admission (workflows.admission): grant order, caps, queued cancels and deadlines.

The grant rule is a pure function, tested on its own; the workflows run on the time-skipping
test server with scripted media activities and the real admission activities.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.admission import AdmissionActivities
from core.contracts import (
    ADMISSION_PAUSE_SIGNAL,
    ADMISSION_POSITION_QUERY,
    ADMISSION_RELEASE_SIGNAL,
    DEADLINE_REASON,
    AdmissionLimits,
    AdmissionRelease,
    AdmissionState,
    AdmissionTicket,
    JobStatus,
    QueuePosition,
    admission_workflow_id,
)
from core.jobs.start import reserved_slots
from tests.conftest import time_skipping_server
from tests.workflows import fakes
from tests.workflows.fakes import FakeMedia
from tests.workflows.skipping import skip
from tests.workflows.test_media_job import event, job, start, wait_for
from workflows.admission import AdmissionWorkflow, line_order, next_grants
from workflows.media_job import MediaJobWorkflow

Handle = WorkflowHandle[Any, Any]

# A job's deadline setting (what the workflow schedules and tells Replicate; not a time taken).
DEADLINE_SETTING = 600


def tickets(*specs: tuple[str, int]) -> list[AdmissionTicket]:
    """(user, priority) in arrival order."""
    return [AdmissionTicket(f"j{n}", user, prio, n) for n, (user, prio) in enumerate(specs, 1)]


# --- the grant rule ---------------------------------------------------------------------------


def test_a_single_job_of_another_user_goes_before_the_flood_behind_it() -> None:
    flood = [("flood", 1)] * 100
    waiting = tickets(*flood, ("solo", 1))
    holders = [AdmissionTicket("h", "flood", 1, 0)]
    last = {"flood": 1}
    one_slot = AdmissionLimits(max_active=2, max_per_user=0)
    granted, _, _ = next_grants(waiting, holders, last, one_slot, seq=1)
    assert [t.user_id for t in granted] == ["solo"]


def test_users_take_turns_and_each_users_jobs_keep_their_order() -> None:
    waiting = tickets(("a", 1), ("a", 1), ("a", 1), ("b", 1), ("b", 1), ("c", 1))
    granted, _, _ = next_grants(waiting, [], {}, AdmissionLimits(max_active=0, max_per_user=0), 0)
    assert [t.job_id for t in granted] == ["j1", "j4", "j6", "j2", "j5", "j3"]


@pytest.mark.parametrize("seed", range(30))
def test_the_line_order_is_the_grant_order_with_every_slot_free(seed: int) -> None:
    rng = random.Random(seed)
    users = [f"u{n}" for n in range(rng.randint(1, 6))]
    waiting = [
        AdmissionTicket(f"j{n}", rng.choice(users), rng.choice([0, 1, 2]), n)
        for n in rng.sample(range(1, 500), rng.randint(0, 60))
    ]
    last = {u: rng.randint(0, 500) for u in users if rng.random() < 0.5}
    unlimited = AdmissionLimits(max_active=0, max_per_user=0)
    granted, _, _ = next_grants(waiting, [], last, unlimited, 501)
    assert line_order(waiting, last) == granted


def test_a_priority_0_job_overtakes_queued_priority_2_jobs() -> None:
    waiting = tickets(*([("batch", 2)] * 10), ("batch", 0))
    granted, _, _ = next_grants(waiting, [], {}, AdmissionLimits(max_active=1), 0)
    assert [t.job_id for t in granted] == ["j11"]


@pytest.mark.parametrize("max_active,max_per_user", [(5, 0), (0, 3), (7, 2), (1, 1)])
def test_the_caps_are_never_exceeded(max_active: int, max_per_user: int) -> None:
    waiting = tickets(*[(f"u{n % 4}", n % 3) for n in range(60)])
    holders = [AdmissionTicket("h", "u0", 1, 0)]
    limits = AdmissionLimits(max_active=max_active, max_per_user=max_per_user)
    granted, _, _ = next_grants(waiting, holders, {}, limits, 0)
    everyone = holders + granted
    if max_active:
        assert len(everyone) == max_active
    if max_per_user:
        per_user = {u: sum(t.user_id == u for t in everyone) for u in ("u0", "u1", "u2", "u3")}
        assert max(per_user.values()) == max_per_user


def test_a_flood_leaves_the_reserved_slots_to_users_with_nothing_at_the_provider() -> None:
    limits = AdmissionLimits(max_active=10, max_per_user=0, reserve=2)
    granted, last, seq = next_grants(tickets(*[("flood", 1)] * 50), [], {}, limits, 0)
    assert len(granted) == 8  # the flood stops short of the cap
    holders = granted
    # Newcomers take the reserve at once; a second job of a newcomer then waits like the flood.
    waiting = tickets(("solo", 1), ("solo", 1), ("other", 2), ("flood", 1))
    granted, _, _ = next_grants(waiting, holders, last, limits, seq)
    assert sorted(t.user_id for t in granted) == ["other", "solo"]


@pytest.mark.parametrize("max_active,share,reserved", [(10, 0.2, 2), (1, 0.2, 0), (2, 0.2, 1),
                                                       (3, 0.9, 2), (50, 0.2, 10), (10, 0, 0)])  # fmt: skip
def test_the_reserve_always_leaves_one_slot_to_a_user_already_there(
    max_active: int, share: float, reserved: int
) -> None:
    assert reserved_slots(max_active, share) == reserved


# --- the workflows ----------------------------------------------------------------------------


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server per test here: each test's line keeps running (a holder check every
    minute) after its worker is gone, and a later test's `env.sleep` then has every one of
    those timers to fire (seen failing with an h2 protocol error)."""
    async with time_skipping_server() as environment:
        yield environment


@pytest.fixture
async def line(env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str, FakeMedia]]:
    fake = FakeMedia()
    task_queue = f"tq-{uuid.uuid4()}"
    admission = AdmissionActivities(client=env.client, task_queue=task_queue)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[MediaJobWorkflow, AdmissionWorkflow],
        activities=[*fake.activities(), admission.request, admission.release, admission.ended],
    ):
        yield env.client, task_queue, fake


def admitted(limits: AdmissionLimits, user_id: str = "u1", **kw: Any) -> Any:
    provider = f"prov-{uuid.uuid4().hex[:8]}"  # a line of its own per test
    return replace(job(**kw), provider=provider, admission=limits, user_id=user_id)


def line_of(client: Client, provider: str) -> Handle:
    """The provider's admission workflow."""
    return client.get_workflow_handle(admission_workflow_id(provider))


async def position(client: Client, provider: str, job_id: str) -> QueuePosition:
    answer: QueuePosition = await line_of(client, provider).query(
        ADMISSION_POSITION_QUERY, job_id, result_type=QueuePosition
    )
    return answer


async def waiting_count(client: Client, provider: str, count: int) -> None:
    for _ in range(400):
        try:
            if (await position(client, provider, "-")).waiting == count:
                return
        except Exception:  # the line starts with the first request
            pass
        await asyncio.sleep(0.025)
    raise AssertionError(f"{provider}: never {count} waiting")


def submitted_order(fake: FakeMedia) -> list[str]:
    return [r.job_id for r in fake.submit_requests]


async def test_the_flood_waits_behind_another_users_single_job(line) -> None:
    client, tq, fake = line
    limits = AdmissionLimits(max_active=1, max_per_user=20)
    first = admitted(limits, user_id="flood")
    provider = first.provider
    running = await start(client, tq, first)
    await wait_for(running, JobStatus.SUBMITTED)
    flood = [replace(first, job_id=uuid.uuid4().hex) for _ in range(5)]
    queued = [await start(client, tq, j) for j in flood]
    await waiting_count(client, provider, 5)
    solo = replace(first, job_id=uuid.uuid4().hex, user_id="solo")
    solo_handle = await start(client, tq, solo)
    await waiting_count(client, provider, 6)
    assert (await position(client, provider, solo.job_id)).position == 1
    assert (await solo_handle.query(MediaJobWorkflow.state)).status == JobStatus.QUEUED

    await running.signal(MediaJobWorkflow.provider_event, event(fakes.SUCCEEDED))
    await running.result()
    await wait_for(solo_handle, JobStatus.SUBMITTED)
    # One slot: only the solo job went to the provider after the first.
    assert submitted_order(fake) == [first.job_id, solo.job_id]
    for handle in [solo_handle, *queued]:
        await handle.signal(MediaJobWorkflow.cancel, "done")
    for handle in [solo_handle, *queued]:
        assert (await handle.result()).status == JobStatus.CANCELED
    assert (await position(client, provider, "-")).waiting == 0


async def test_a_job_cancelled_while_queued_leaves_the_line_and_never_submits(line) -> None:
    client, tq, fake = line
    limits = AdmissionLimits(max_active=1)
    first = admitted(limits)
    running = await start(client, tq, first)
    await wait_for(running, JobStatus.SUBMITTED)
    second = replace(first, job_id=uuid.uuid4().hex)
    handle = await start(client, tq, second)
    await waiting_count(client, first.provider, 1)
    await handle.signal(MediaJobWorkflow.cancel, "not needed")
    result = await handle.result()
    assert result.status == JobStatus.CANCELED and result.error == "not needed"
    assert (await position(client, first.provider, second.job_id)).position is None
    assert submitted_order(fake) == [first.job_id]
    await running.signal(MediaJobWorkflow.cancel, "done")
    await running.result()
    assert fake.cancels == [fakes.PROVIDER_JOB_ID]  # the running one, at the provider


async def test_a_released_slot_goes_to_the_next_job(line) -> None:
    client, tq, _ = line
    first = admitted(AdmissionLimits(max_active=1))
    running = await start(client, tq, first)
    await wait_for(running, JobStatus.SUBMITTED)
    second = replace(first, job_id=uuid.uuid4().hex)
    handle = await start(client, tq, second)
    await waiting_count(client, first.provider, 1)
    await running.signal(MediaJobWorkflow.provider_event, event(fakes.FAILED))
    assert (await running.result()).status == JobStatus.FAILED
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.SUCCEEDED))
    assert (await handle.result()).status == JobStatus.SUCCEEDED
    assert (await position(client, first.provider, "-")).active == 0


@pytest.mark.parametrize("busy", [False, True])
async def test_a_terminated_holder_frees_its_slot_on_the_slow_check(
    line, env: WorkflowEnvironment, busy: bool
) -> None:
    client, tq, fake = line
    first = admitted(AdmissionLimits(max_active=1))
    running = await start(client, tq, first)
    await wait_for(running, JobStatus.SUBMITTED)
    second = replace(first, job_id=uuid.uuid4().hex)
    handle = await start(client, tq, second)
    await waiting_count(client, first.provider, 1)
    await running.terminate("gone without releasing")
    the_line = line_of(client, first.provider)
    if not busy:
        await skip(env, timedelta(minutes=2), handle, the_line)
    # Busy: a change every 25 s. The check used to wait for a minute without one, so a busy
    # line never checked its holders.
    for n in range(4 if busy else 0):
        await skip(env, timedelta(seconds=25), handle, the_line)
        await the_line.signal(
            ADMISSION_RELEASE_SIGNAL, AdmissionRelease(job_id=f"noise-{n}", provider=first.provider)
        )
    await wait_for(handle, JobStatus.SUBMITTED)
    assert submitted_order(fake) == [first.job_id, second.job_id]
    await handle.signal(MediaJobWorkflow.cancel, "done")
    await handle.result()


async def test_past_its_deadline_a_job_is_cancelled_at_the_provider(line) -> None:
    client, tq, fake = line
    handle = await start(client, tq, admitted(AdmissionLimits(), deadline_seconds=DEADLINE_SETTING))
    result = await handle.result()  # the provider never finishes: time skips to the deadline
    assert result.status == JobStatus.CANCELED
    assert result.error == DEADLINE_REASON
    assert fake.cancels == [fakes.PROVIDER_JOB_ID]
    assert fake.records[-1].status == JobStatus.CANCELED
    # Replicate is told the deadline too (Cancel-After).
    told = fake.submit_requests[0].cancel_after_seconds
    assert told == pytest.approx(DEADLINE_SETTING, abs=5)  # the setting, as Cancel-After


@pytest.mark.parametrize(
    "provider_ends_at,reason",
    [
        # Replicate's own Cancel-After fires with our deadline, its webhook first: still the
        # deadline. A second early, the most the workflow allows for, so the signal has that
        # second of real time to be handled before our own deadline timer fires.
        (DEADLINE_SETTING - 1.0, DEADLINE_REASON),
        # Cancelled at the provider well before the deadline (by hand, by its own limits).
        (DEADLINE_SETTING / 2, "canceled at {provider}"),
    ],
)
async def test_a_cancel_reported_by_the_provider_names_the_deadline_only_once_reached(
    line, env: WorkflowEnvironment, provider_ends_at: float, reason: str
) -> None:
    client, tq, _ = line
    inp = admitted(AdmissionLimits(), deadline_seconds=DEADLINE_SETTING)
    handle = await start(client, tq, inp)
    await wait_for(handle, JobStatus.SUBMITTED)
    await skip(env, timedelta(seconds=provider_ends_at), handle, guard=timedelta(seconds=0.5))
    await handle.signal(MediaJobWorkflow.provider_event, event(fakes.CANCELED))
    result = await handle.result()
    assert result.status == JobStatus.CANCELED
    assert result.error == reason.format(provider=inp.provider)


async def test_a_deadline_passed_while_queued_withdraws_the_job(
    line, env: WorkflowEnvironment
) -> None:
    client, tq, fake = line
    first = admitted(AdmissionLimits(max_active=1))
    running = await start(client, tq, first)
    await wait_for(running, JobStatus.SUBMITTED)
    late = replace(first, job_id=uuid.uuid4().hex, deadline_seconds=60)
    result = await (await start(client, tq, late)).result()
    assert result.status == JobStatus.CANCELED and result.error == DEADLINE_REASON
    assert submitted_order(fake) == [first.job_id]
    assert (await position(client, first.provider, "-")).waiting == 0
    await skip(env, timedelta(0), running, line_of(client, first.provider))
    await running.signal(MediaJobWorkflow.cancel, "done")
    await running.result()


async def test_a_deadline_without_admission_still_cancels(line) -> None:
    client, tq, fake = line
    result = await (await start(client, tq, job(deadline_seconds=120))).result()
    assert result.status == JobStatus.CANCELED and result.error == DEADLINE_REASON
    assert fake.cancels == [fakes.PROVIDER_JOB_ID]


async def test_the_submit_and_cancel_run_on_the_providers_queue(
    line, env: WorkflowEnvironment
) -> None:
    client, tq, fake = line
    calls = FakeMedia()
    provider_queue = f"calls-{uuid.uuid4()}"
    own = {a.__name__: a for a in calls.activities()}
    async with Worker(client, task_queue=provider_queue, activities=[own["submit"], own["cancel"]]):
        inp = admitted(AdmissionLimits(), provider_task_queue=provider_queue)
        handle = await start(client, tq, inp)
        await wait_for(handle, JobStatus.SUBMITTED)
        await handle.signal(MediaJobWorkflow.cancel, "stop")
        assert (await handle.result()).status == JobStatus.CANCELED
    assert (calls.submits, calls.cancels) == (1, [fakes.PROVIDER_JOB_ID])
    assert (fake.submits, fake.cancels) == (0, [])


async def test_a_providers_429_pauses_its_line(line, env: WorkflowEnvironment) -> None:
    client, tq, fake = line
    inp = admitted(AdmissionLimits())
    await client.start_workflow(
        AdmissionWorkflow.run,
        AdmissionState(provider=inp.provider),
        id=admission_workflow_id(inp.provider),
        task_queue=tq,
        start_signal=ADMISSION_PAUSE_SIGNAL,
        start_signal_args=[30.0],
    )
    handle = await start(client, tq, inp)
    await waiting_count(client, inp.provider, 1)  # a free line, but paused
    assert fake.submits == 0
    await skip(env, timedelta(seconds=45), handle, line_of(client, inp.provider))
    await wait_for(handle, JobStatus.SUBMITTED)
    await handle.signal(MediaJobWorkflow.cancel, "done")
    await handle.result()
