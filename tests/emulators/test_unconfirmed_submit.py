"""Submit exactly once where the provider's jobs can't be looked up (fal, KIE).

A create is counted as its request leaves (an attempt that never connected counts for nothing).
A create that the provider refused with an answer (a 429, an error status) made nothing and is
simply tried again. One left without an answer (a timeout, a worker killed mid-call) may have
made a job that only its webhook will ever name: `media.submit` then creates nothing and raises
`SubmitUnconfirmed`, and the workflow waits for that webhook (tests/workflows). Before this, the
retried submit created a second, billed job: the soak found one at KIE.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.media import MediaActivities, made_nothing
from core.contracts import ERR_SUBMIT_UNCONFIRMED, JobKind, JobStatus, SubmitRequest
from core.models import Job
from providers.base import (
    FRESH_CONNECTION,
    Provider,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    SendGate,
)
from providers.fal import FalProvider
from providers.kie import KieProvider
from providers.transport import FreshConnectionsForCreates
from tests.emulators.fal_support import FAL_KEY
from tests.emulators.kie_support import KIE_KEY

pytest_plugins = ("tests.emulators.fal_fixtures", "tests.emulators.kie_fixtures")

DEAD_END = "http://127.0.0.1:9/webhooks/{provider}?job_id={job_id}&token=t"
MODELS = {"fal": "fal-ai/flux/dev", "kie": "google/nano-banana"}


def request_for(provider: str, job_id: str, faults: dict[str, Any] | None = None) -> SubmitRequest:
    payload: dict[str, Any] = {"prompt": "a fox", "seed": uuid.uuid4().hex}
    if faults is not None:
        payload["_emulator"] = faults
    return SubmitRequest(
        job_id=job_id,
        kind=JobKind.GENERATION,
        provider=provider,
        model=MODELS[provider],
        input=payload,
        webhook_url=DEAD_END.format(provider=provider, job_id=job_id),
        webhook_events=["completed"],
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15, trust_env=False) as client:
        yield client


@pytest.fixture(params=["fal", "kie"])
def side(
    request: pytest.FixtureRequest,
    http: httpx.AsyncClient,
    fal_url: str,
    kie_url: str,
    fal_api: httpx.Client,
    kie_api: httpx.Client,
) -> tuple[Provider, httpx.Client]:
    """The provider client and an emulator client (for `/_emulator/jobs`)."""
    if request.param == "fal":
        return FalProvider(http, base_url=fal_url, api_key=FAL_KEY), fal_api
    return KieProvider(http, base_url=kie_url, api_key=KIE_KEY), kie_api


def provider_jobs(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    response = api.get("/_emulator/jobs", params={"job_id": job_id})
    response.raise_for_status()
    jobs: list[dict[str, Any]] = response.json()["provider_jobs"]
    return jobs


async def add_job(
    sessions: async_sessionmaker[AsyncSession], job_id: str, provider: str, attempts: int = 0
) -> None:
    async with sessions() as session:
        session.add(
            Job(
                id=job_id,
                user_id="u1",
                kind=JobKind.GENERATION.value,
                provider=provider,
                model=MODELS[provider],
                status=JobStatus.QUEUED.value,
                submit_attempts=attempts,
            )
        )
        await session.commit()


async def counts(sessions: async_sessionmaker[AsyncSession], job_id: str) -> tuple[int, int]:
    async with sessions() as session:
        job = await session.scalar(select(Job).where(Job.id == job_id))
    assert job is not None
    return job.submit_attempts, job.submit_refusals


def activities(sessions: async_sessionmaker[AsyncSession], provider: Provider) -> MediaActivities:
    return MediaActivities(
        sessions=sessions,
        storage=cast(Any, None),
        providers={provider.name: provider},
        fetcher=cast(Any, None),
    )


async def test_an_attempt_that_was_never_answered_creates_nothing_again(
    sessions: async_sessionmaker[AsyncSession], side: tuple[Provider, httpx.Client]
) -> None:
    """A worker killed mid-call (or a Temporal restart that re-runs the local activity):
    attempt 1 is counted but neither answered nor refused."""
    provider, api = side
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id, provider.name, attempts=1)
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(
            activities(sessions, provider).submit, request_for(provider.name, job_id)
        )
    assert err.value.type == ERR_SUBMIT_UNCONFIRMED and err.value.non_retryable
    assert "waiting for its webhook" in err.value.message
    assert provider_jobs(api, job_id) == []


async def test_a_timed_out_create_is_not_made_twice(
    sessions: async_sessionmaker[AsyncSession],
    side: tuple[Provider, httpx.Client],
    fal_url: str,
    kie_url: str,
) -> None:
    provider, api = side
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id, provider.name)
    delay = {"fal": "latency_seconds", "kie": "latency_seconds"}[provider.name]
    request = request_for(provider.name, job_id, {delay: 3})
    async with httpx.AsyncClient(timeout=0.5, trust_env=False) as impatient:
        hasty: Provider = (
            FalProvider(impatient, base_url=fal_url, api_key=FAL_KEY)
            if provider.name == "fal"
            else KieProvider(impatient, base_url=kie_url, api_key=KIE_KEY)
        )
        with pytest.raises(httpx.ReadTimeout):
            await ActivityEnvironment().run(activities(sessions, hasty).submit, request)
    assert len(provider_jobs(api, job_id)) == 1  # made, but its answer never came
    assert await counts(sessions, job_id) == (1, 0)
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(activities(sessions, provider).submit, request)
    assert err.value.type == ERR_SUBMIT_UNCONFIRMED
    assert len(provider_jobs(api, job_id)) == 1


@pytest.mark.parametrize("fault", ["rate_limited", "server_error"])
async def test_a_refused_create_is_simply_tried_again(
    sessions: async_sessionmaker[AsyncSession], side: tuple[Provider, httpx.Client], fault: str
) -> None:
    provider, api = side
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id, provider.name)
    switches = {
        ("fal", "rate_limited"): {"rate_limits": 1, "retry_after_seconds": 0},
        ("fal", "server_error"): {"server_errors": 1},
        ("kie", "rate_limited"): {"rate_limits": 1},
        ("kie", "server_error"): {"server_errors": 1},
    }[(provider.name, fault)]
    request = request_for(provider.name, job_id, switches)
    media = activities(sessions, provider)
    with pytest.raises((ApplicationError, ProviderUnavailable)):
        await ActivityEnvironment().run(media.submit, request)
    assert await counts(sessions, job_id) == (1, 1)
    snapshot = await ActivityEnvironment().run(media.submit, request)
    assert [j["id"] for j in provider_jobs(api, job_id)] == [snapshot.provider_job_id]
    assert await counts(sessions, job_id) == (2, 1)


def _answer(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "https://provider.test/create"))


@pytest.mark.parametrize(
    ("error", "nothing_made"),
    [
        (ProviderRateLimited(1.0), True),
        (ProviderRejected("bad input", 422), True),
        (ProviderUnavailable("500 from provider", answered=True), True),
        (ProviderUnavailable("answer without a request_id"), False),
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("no route"), True),
        (httpx.ReadTimeout("answer never came"), False),
        (httpx.RemoteProtocolError("connection dropped after the request"), False),
    ],
)
def test_what_a_failed_create_says_about_the_provider_job(
    error: BaseException, nothing_made: bool
) -> None:
    assert made_nothing(error) is nothing_made


@pytest.mark.parametrize(("status", "answered"), [(500, True), (503, True), (504, False)])
def test_a_gateway_timeout_is_no_answer(status: int, answered: bool) -> None:
    from providers.http_errors import raise_for_status

    with pytest.raises(ProviderUnavailable) as err:
        raise_for_status(_answer(status))
    assert err.value.answered is answered


async def test_an_attempt_that_never_connected_is_not_counted(
    sessions: async_sessionmaker[AsyncSession], side: tuple[Provider, httpx.Client]
) -> None:
    """Counting happens as the request leaves, not before the call: an attempt that failed
    (or whose worker was killed) while connecting sent nothing, so the next one just sends."""
    provider, api = side
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id, provider.name)
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        nowhere: Provider = (
            FalProvider(http, base_url="http://127.0.0.1:9", api_key=FAL_KEY)
            if provider.name == "fal"
            else KieProvider(http, base_url="http://127.0.0.1:9", api_key=KIE_KEY)
        )
        with pytest.raises(httpx.ConnectError):
            await ActivityEnvironment().run(
                activities(sessions, nowhere).submit, request_for(provider.name, job_id)
            )
    assert await counts(sessions, job_id) == (0, 0)
    snapshot = await ActivityEnvironment().run(
        activities(sessions, provider).submit, request_for(provider.name, job_id)
    )
    assert [j["id"] for j in provider_jobs(api, job_id)] == [snapshot.provider_job_id]
    assert await counts(sessions, job_id) == (1, 0)


async def test_a_gate_that_refuses_sends_nothing(
    http: httpx.AsyncClient, side: tuple[Provider, httpx.Client]
) -> None:
    """If the count can't be written (or another attempt went out meanwhile), not one byte of
    the create reaches the provider."""
    provider, api = side
    job_id = uuid.uuid4().hex

    async def refuse() -> None:
        raise RuntimeError("count not written")

    gate = SendGate(refuse)
    with pytest.raises(RuntimeError, match="count not written"):
        await provider.submit(request_for(provider.name, job_id), gate=gate)
    assert not gate.fired
    assert provider_jobs(api, job_id) == []


async def test_two_runs_of_one_submit_send_once(
    sessions: async_sessionmaker[AsyncSession], side: tuple[Provider, httpx.Client]
) -> None:
    """A local activity re-run while the first run is still alive: the run whose count was
    overtaken by the other's does not send, and its retry waits for the webhook."""
    provider, api = side
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id, provider.name)
    media = activities(sessions, provider)
    first = await media._earlier_submits(job_id)
    assert first is not None and first.attempts == 0
    snapshot = await ActivityEnvironment().run(media.submit, request_for(provider.name, job_id))
    with pytest.raises(ApplicationError) as raced:
        await media._count_submit(job_id, first.attempts)  # the slower run's count
    assert raced.value.type == "SubmitRaced" and not raced.value.non_retryable
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(media.submit, request_for(provider.name, job_id))
    assert err.value.type == ERR_SUBMIT_UNCONFIRMED
    assert [j["id"] for j in provider_jobs(api, job_id)] == [snapshot.provider_job_id]


async def test_a_job_ended_before_its_submit_reaches_no_provider(
    sessions: async_sessionmaker[AsyncSession], side: tuple[Provider, httpx.Client]
) -> None:
    provider, api = side
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id, provider.name)
    media = activities(sessions, provider)
    earlier = await media._earlier_submits(job_id)
    assert earlier is not None
    async with sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        job.status = JobStatus.CANCELED.value
        await session.commit()
    with pytest.raises(ApplicationError) as err:  # cancelled between the read and the send
        await media._count_submit(job_id, earlier.attempts)
    assert (
        err.value.non_retryable and "canceled before it reached the provider" in err.value.message
    )
    with pytest.raises(ApplicationError):
        await ActivityEnvironment().run(media.submit, request_for(provider.name, job_id))
    assert provider_jobs(api, job_id) == []


async def test_a_create_never_rides_a_pooled_connection(kie_url: str) -> None:
    """A pooled connection the provider closes (its idle timeout) as a request is written loses
    the request unread, which looks like a create that was taken and never answered: creates
    go out on connections of their own, other calls reuse the pool."""
    events: list[str] = []

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith(("connect_tcp.started", "send_request_headers.started")):
            events.append(event.split(".")[-2])

    async with httpx.AsyncClient(
        transport=FreshConnectionsForCreates(httpx.Limits(max_connections=10)), trust_env=False
    ) as client:
        for _ in range(2):
            await client.get(f"{kie_url}/health", extensions={"trace": trace})
        assert events == ["connect_tcp", "send_request_headers", "send_request_headers"]
        events.clear()
        for _ in range(2):
            await client.get(
                f"{kie_url}/health", extensions={"trace": trace, FRESH_CONNECTION: True}
            )
        assert events == ["connect_tcp", "send_request_headers"] * 2
