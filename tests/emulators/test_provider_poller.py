"""The provider poller's sweep (`media.poll_provider`) against the Replicate emulator.

Jobs whose webhooks are lost are refreshed from the account's list, a page per 100 jobs, and
only the jobs whose provider phase moved past their row's are signalled.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.provider_poller import ProviderPollerActivities
from core.contracts import (
    EVENT_FROM_POLLER,
    JobKind,
    JobStatus,
    PollSweepRequest,
    ProviderEvent,
    ProviderPhase,
    ProviderRef,
    ProviderSnapshot,
    SubmitRequest,
    media_job_workflow_id,
)
from core.models import Job, WebhookReceipt, utcnow
from providers.base import Provider
from providers.replicate import ReplicateProvider
from tests.emulators.support import TOKEN, VERSION

DEAD_END = "http://127.0.0.1:9/webhooks/replicate?job_id={job_id}&token=t"


@dataclass
class Signals:
    """Stands in for the Temporal client: records each signal by workflow id."""

    sent: dict[str, list[Any]] = field(default_factory=dict)

    def get_workflow_handle(self, workflow_id: str) -> Signals.Handle:
        return Signals.Handle(self, workflow_id)

    @dataclass
    class Handle:
        signals: Signals
        workflow_id: str

        async def signal(self, name: str, arg: Any) -> None:
            assert name == "provider_event"
            self.signals.sent.setdefault(self.workflow_id, []).append(arg)


@pytest.fixture
async def provider(emulator_url: str) -> AsyncIterator[ReplicateProvider]:
    async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
        yield ReplicateProvider(http, base_url=emulator_url, api_token=TOKEN)


def requests_of(api: httpx.Client) -> dict[str, int]:
    counts: dict[str, int] = api.get("/_emulator/stats").json()["requests"]
    return counts


async def submit_jobs(
    provider: Provider,
    sessions: async_sessionmaker[AsyncSession],
    count: int,
    faults: dict[str, Any],
) -> dict[str, str]:
    """`count` predictions with `faults` and a quiet `submitted` row each: job id → prediction."""
    made: dict[str, str] = {}
    for _ in range(count):
        job_id = uuid.uuid4().hex
        snapshot = await provider.submit(
            SubmitRequest(
                job_id=job_id,
                kind=JobKind.GENERATION,
                provider="replicate",
                model=VERSION,
                input={"prompt": "a fox", "_emulator": {"drop_webhooks": True, **faults}},
                webhook_url=DEAD_END.format(job_id=job_id),
                webhook_events=["completed"],
            )
        )
        made[job_id] = snapshot.provider_job_id
    quiet = utcnow() - timedelta(minutes=5)
    async with sessions() as session:
        for job_id, prediction in made.items():
            session.add(
                Job(
                    id=job_id, user_id="u1", kind=JobKind.GENERATION.value,
                    provider="replicate", model=VERSION, status=JobStatus.SUBMITTED.value,
                    provider_status="starting", provider_phase=ProviderPhase.QUEUED.value,
                    provider_job_id=prediction, created_at=quiet, updated_at=quiet,
                )
            )  # fmt: skip
        await session.commit()
    return made


async def until_ended(provider: ReplicateProvider, predictions: list[str]) -> None:
    for prediction in predictions:
        ref = ProviderRef(
            job_id="-", kind=JobKind.GENERATION, provider="replicate", provider_job_id=prediction
        )
        for _ in range(200):
            if (await provider.get(ref)).phase == ProviderPhase.SUCCEEDED:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{prediction} never succeeded")


def sweeper(
    sessions: async_sessionmaker[AsyncSession], provider: Provider, signals: Signals
) -> ProviderPollerActivities:
    return ProviderPollerActivities(
        sessions=sessions,
        providers={"replicate": provider},
        temporal=cast(Client, signals),
    )


async def test_sweep_signals_only_the_jobs_that_moved_in_a_few_list_calls(
    provider: ReplicateProvider, api: httpx.Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    stuck = await submit_jobs(provider, sessions, 15, {"stay_starting": True})
    done = await submit_jobs(provider, sessions, 25, {})
    await until_ended(provider, list(done.values()))
    signals = Signals()
    before = requests_of(api)

    poller = sweeper(sessions, provider, signals)
    request = PollSweepRequest(provider="replicate", interval_seconds=10)
    result = await ActivityEnvironment().run(poller.sweep, request)

    after = requests_of(api)
    calls = {kind: after.get(kind, 0) - before.get(kind, 0) for kind in after}
    assert set(signals.sent) == {media_job_workflow_id(job_id) for job_id in done}
    for events in signals.sent.values():
        assert len(events) == 1
        event: ProviderEvent = events[0]
        assert event.source == EVENT_FROM_POLLER
        assert event.snapshot.phase == ProviderPhase.SUCCEEDED
        assert event.snapshot.output_urls  # a success names its files
    assert result.asked == len(stuck) + len(done)
    assert result.signalled == len(done)
    assert calls["get"] == 0
    assert 1 <= calls["list"] == result.provider_calls
    assert result.provider_calls * 10 <= len(stuck) + len(done)
    assert not result.webhooks_arriving
    # The next sweep, before the workflows recorded the news: asked again, told nothing twice.
    again = await ActivityEnvironment().run(poller.sweep, request)
    assert (again.asked, again.signalled) == (len(stuck) + len(done), 0)
    assert all(len(events) == 1 for events in signals.sent.values())


@pytest.mark.parametrize("interval", [200, 60])
async def test_with_a_bulk_read_every_job_in_flight_is_asked_while_webhooks_arrive(
    provider: ReplicateProvider,
    api: httpx.Client,
    sessions: async_sessionmaker[AsyncSession],
    interval: int,
) -> None:
    await submit_jobs(provider, sessions, 3, {"stay_starting": True})
    async with sessions() as session:
        # Webhooks of the provider arrive; a job's own may still have been lost, and asking
        # Replicate about every job costs the same list pages as asking about the oldest.
        session.add(WebhookReceipt(provider="replicate", webhook_id="msg_1", job_id="other"))
        await session.commit()
    signals = Signals()
    before = requests_of(api)

    result = await ActivityEnvironment().run(
        sweeper(sessions, provider, signals).sweep,
        PollSweepRequest(provider="replicate", interval_seconds=interval),
    )

    assert result.webhooks_arriving
    assert (result.in_flight, result.asked, result.provider_calls) == (3, 3, 1)
    assert requests_of(api) != before
    assert signals.sent == {}  # still starting: nothing moved


@dataclass
class OneByOne:
    """A provider without a bulk read (as fal and KIE): counts its single reads."""

    name: str = "replicate"
    lookup: bool = False
    reads: int = 0

    async def get(self, ref: ProviderRef) -> ProviderSnapshot:
        self.reads += 1
        phase = ProviderPhase.RUNNING if ref.provider_job_id.endswith("0") else ProviderPhase.QUEUED
        return ProviderSnapshot(ref.provider_job_id, phase.value, phase)


async def add_quiet_jobs(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    """`count` submitted jobs (`job-{n}`, provider job `req-{n}`) whose rows are 5 min old."""
    quiet = utcnow() - timedelta(minutes=5)
    async with sessions() as session:
        for n in range(count):
            session.add(
                Job(
                    id=f"job-{n}", user_id="u1", kind="generation", provider="replicate",
                    model=VERSION, status="submitted", provider_status="IN_QUEUE",
                    provider_phase="queued", provider_job_id=f"req-{n}", created_at=quiet,
                    updated_at=quiet,
                )
            )  # fmt: skip
        await session.commit()


def one_by_one_poller(
    sessions: async_sessionmaker[AsyncSession], fake: OneByOne, signals: Signals
) -> ProviderPollerActivities:
    return ProviderPollerActivities(
        sessions=sessions,
        providers={"replicate": cast(Provider, fake)},
        temporal=cast(Client, signals),
        rate_per_second=1000,
        concurrency=3,
    )


async def test_without_a_bulk_read_each_quiet_job_is_read_once_and_movers_signalled(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await add_quiet_jobs(sessions, 12)
    fake, signals = OneByOne(), Signals()
    poller = one_by_one_poller(sessions, fake, signals)

    result = await ActivityEnvironment().run(
        poller.sweep, PollSweepRequest(provider="replicate", interval_seconds=10)
    )

    assert fake.reads == result.provider_calls == 12
    assert set(signals.sent) == {media_job_workflow_id("job-0"), media_job_workflow_id("job-10")}


@pytest.mark.parametrize(("interval", "asked"), [(200, 0), (60, 12)])
async def test_without_a_bulk_read_only_jobs_quiet_two_intervals_are_read_while_webhooks_arrive(
    sessions: async_sessionmaker[AsyncSession], interval: int, asked: int
) -> None:
    await add_quiet_jobs(sessions, 12)
    async with sessions() as session:
        # Jobs quiet for 5 min are long jobs at a 200 s interval (not read: each read is a
        # call of its own), and maybe lost webhooks at a 60 s one (read).
        session.add(WebhookReceipt(provider="replicate", webhook_id="msg_1", job_id="other"))
        await session.commit()
    fake = OneByOne()
    poller = one_by_one_poller(sessions, fake, Signals())

    result = await ActivityEnvironment().run(
        poller.sweep, PollSweepRequest(provider="replicate", interval_seconds=interval)
    )

    assert result.webhooks_arriving
    assert result.asked == fake.reads == asked
