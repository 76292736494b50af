"""Submit exactly once: `ReplicateProvider.find` and `media.submit` against the emulator.

Replicate has no idempotency key, so a create whose answer was lost is found again in the
account's list by the webhook URL it carries (`job_id=…`). The emulator's
`lost_create_responses` fault creates the prediction and answers 500, which is exactly that.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.media import MediaActivities
from core.contracts import JobKind, JobStatus, ProviderPhase, SubmitRequest
from core.models import Job
from providers.base import ProviderUnavailable
from providers.replicate import ReplicateProvider
from tests.emulators.support import TOKEN, VERSION

pytest_plugins = ("tests.emulators.fal_fixtures", "tests.emulators.kie_fixtures")

# Nobody listens here: the emulator's webhooks to it fail and are given up, which is fine.
DEAD_END = "http://127.0.0.1:9/webhooks/{provider}?job_id={job_id}&token=t"

# A Cancel-After the provider is asked for, and the deadline Replicate then records.
CANCEL_AFTER_ASKED = 90.2
CANCEL_AFTER_ROUNDED_UP = timedelta(seconds=91)


def request_for(
    job_id: str, faults: dict[str, Any] | None = None, kind: JobKind = JobKind.GENERATION
) -> SubmitRequest:
    payload: dict[str, Any] = {"prompt": "a fox", "seed": uuid.uuid4().hex}
    model = VERSION
    if kind == JobKind.TRAINING:
        payload = {"destination": "acme/u1-fox", "seed": uuid.uuid4().hex}
        model = f"acme/trainer:{VERSION}"
    if faults is not None:
        payload["_emulator"] = faults
    return SubmitRequest(
        job_id=job_id,
        kind=kind,
        provider="replicate",
        model=model,
        input=payload,
        webhook_url=DEAD_END.format(provider="replicate", job_id=job_id),
        webhook_events=["completed"],
    )


@pytest.fixture
async def provider(emulator_url: str) -> AsyncIterator[ReplicateProvider]:
    async with httpx.AsyncClient(timeout=15, trust_env=False) as http:
        yield ReplicateProvider(http, base_url=emulator_url, api_token=TOKEN)


def provider_jobs(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    response = api.get("/_emulator/jobs", params={"job_id": job_id})
    response.raise_for_status()
    body = response.json()
    assert body["job_id"] == job_id
    jobs: list[dict[str, Any]] = body["provider_jobs"]
    return jobs


def requests_of(api: httpx.Client, kind: str) -> int:
    count: int = api.get("/_emulator/stats").json()["requests"][kind]
    return count


# --- find ---------------------------------------------------------------------------------------


async def test_find_returns_the_jobs_of_our_job_oldest_first(
    provider: ReplicateProvider, api: httpx.Client
) -> None:
    job_id = uuid.uuid4().hex
    request = request_for(job_id)
    assert await provider.find(request) == []
    first = await provider.submit(request)
    await provider.submit(request_for(uuid.uuid4().hex))  # another job's: not ours
    second = await provider.submit(request)
    found = await provider.find(request, since=datetime.now(UTC))
    assert [s.provider_job_id for s in found] == [first.provider_job_id, second.provider_job_id]
    assert [j["id"] for j in provider_jobs(api, job_id)] == [
        first.provider_job_id,
        second.provider_job_id,
    ]


async def test_find_reads_the_webhook_by_get_when_the_list_leaves_it_out(
    provider: ReplicateProvider, api: httpx.Client, emulator_url: str
) -> None:
    request = request_for(uuid.uuid4().hex, {"list_without_webhook": True})
    created = await provider.submit(request)
    async with httpx.AsyncClient(base_url=emulator_url, headers=dict(api.headers)) as client:
        listed = (await client.get("/v1/predictions")).json()["results"]
    assert "webhook" not in next(item for item in listed if item["id"] == created.provider_job_id)
    gets = requests_of(api, "get")
    found = await provider.find(request)
    assert [s.provider_job_id for s in found] == [created.provider_job_id]
    assert requests_of(api, "get") > gets


async def test_find_looks_no_further_back_than_the_job(provider: ReplicateProvider) -> None:
    request = request_for(uuid.uuid4().hex)
    await provider.submit(request)
    # A job created an hour from now can't own a prediction made today.
    assert await provider.find(request, since=datetime.now(UTC) + timedelta(hours=1)) == []


async def test_find_looks_in_the_trainings_for_a_training(provider: ReplicateProvider) -> None:
    request = request_for(uuid.uuid4().hex, kind=JobKind.TRAINING)
    created = await provider.submit(request)
    found = await provider.find(request)
    assert [s.provider_job_id for s in found] == [created.provider_job_id]


async def test_a_list_cursor_off_the_base_url_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        page = {"results": [], "next": "https://elsewhere.example/v1/predictions?cursor=x"}
        return httpx.Response(200, json=page)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        provider = ReplicateProvider(http, base_url="https://r.test", api_token="t")
        with pytest.raises(ProviderUnavailable, match="leaves"):
            await provider.find(request_for("j1"))


# --- the emulator's ambiguous creates -----------------------------------------------------------


async def test_a_lost_create_answer_is_a_500_for_a_prediction_that_exists(
    provider: ReplicateProvider, api: httpx.Client
) -> None:
    job_id = uuid.uuid4().hex
    request = request_for(job_id, {"lost_create_responses": 1})
    with pytest.raises(ProviderUnavailable):
        await provider.submit(request)
    assert len(provider_jobs(api, job_id)) == 1
    # The fault counts per identical body: the next create is answered (and makes a second).
    await provider.submit(request)
    assert len(provider_jobs(api, job_id)) == 2


def test_a_slow_create_answer_comes_after_the_prediction_exists(
    api: httpx.Client, emulator_url: str
) -> None:
    job_id = uuid.uuid4().hex
    body = {
        "version": VERSION,
        "input": {"seed": job_id, "_emulator": {"latency_seconds": 30}},
        "webhook": DEAD_END.format(provider="replicate", job_id=job_id),
    }
    with pytest.raises(httpx.ReadTimeout):
        api.post("/v1/predictions", json=body, timeout=1.0)
    assert len(provider_jobs(api, job_id)) == 1


# --- media.submit ---------------------------------------------------------------------------------


async def add_job(
    sessions: async_sessionmaker[AsyncSession], job_id: str, attempts: int = 0
) -> None:
    async with sessions() as session:
        session.add(
            Job(
                id=job_id,
                user_id="u1",
                kind=JobKind.GENERATION.value,
                provider="replicate",
                model=VERSION,
                status=JobStatus.QUEUED.value,
                submit_attempts=attempts,
            )
        )
        await session.commit()


def activities(
    sessions: async_sessionmaker[AsyncSession], provider: ReplicateProvider
) -> MediaActivities:
    return MediaActivities(
        sessions=sessions,
        storage=cast(Any, None),
        providers={"replicate": provider},
        fetcher=cast(Any, None),
    )


async def test_a_retried_submit_adopts_the_prediction_whose_answer_was_lost(
    sessions: async_sessionmaker[AsyncSession], provider: ReplicateProvider, api: httpx.Client
) -> None:
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id)
    media = activities(sessions, provider)
    request = request_for(job_id, {"lost_create_responses": 1})
    env = ActivityEnvironment()
    with pytest.raises(ProviderUnavailable):
        await env.run(media.submit, request)
    snapshot = await env.run(media.submit, request)
    jobs = provider_jobs(api, job_id)
    assert [j["id"] for j in jobs] == [snapshot.provider_job_id]
    async with sessions() as session:
        job = await session.scalar(select(Job).where(Job.id == job_id))
    # One create went out: the retry adopted its prediction without sending another.
    assert job is not None and job.submit_attempts == 1
    # media.submit writes nothing after the create: the workflow records SUBMITTED.
    assert job.status == JobStatus.QUEUED.value and job.provider_job_id is None


async def test_extra_provider_jobs_of_earlier_attempts_are_cancelled(
    sessions: async_sessionmaker[AsyncSession], provider: ReplicateProvider, api: httpx.Client
) -> None:
    job_id = uuid.uuid4().hex
    request = request_for(job_id, {"stay_starting": True})
    oldest = await provider.submit(request)
    newer = await provider.submit(request)
    await add_job(sessions, job_id, attempts=2)
    snapshot = await ActivityEnvironment().run(activities(sessions, provider).submit, request)
    assert snapshot.provider_job_id == oldest.provider_job_id
    assert snapshot.phase == ProviderPhase.QUEUED
    by_id = {j["id"]: j for j in provider_jobs(api, job_id)}
    assert by_id.keys() == {oldest.provider_job_id, newer.provider_job_id}
    assert by_id[newer.provider_job_id]["status"] == "canceled"
    assert by_id[newer.provider_job_id]["canceled"] is True
    assert by_id[oldest.provider_job_id]["status"] == "starting"


async def test_a_first_attempt_creates_without_looking(
    sessions: async_sessionmaker[AsyncSession], provider: ReplicateProvider, api: httpx.Client
) -> None:
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id)
    lists = requests_of(api, "list")
    await ActivityEnvironment().run(activities(sessions, provider).submit, request_for(job_id))
    assert requests_of(api, "list") == lists
    assert len(provider_jobs(api, job_id)) == 1


async def test_a_job_cancelled_before_its_submit_never_reaches_the_provider(
    sessions: async_sessionmaker[AsyncSession], provider: ReplicateProvider, api: httpx.Client
) -> None:
    """A queued job with no workflow yet is cancelled by the API; a start already in flight
    (the API's or the recovery sweep's) then runs the submit: it must create nothing."""
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id)
    async with sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        job.status = JobStatus.CANCELED.value
        await session.commit()
    creates = requests_of(api, "create")
    with pytest.raises(ApplicationError, match="canceled before it reached the provider") as err:
        await ActivityEnvironment().run(activities(sessions, provider).submit, request_for(job_id))
    assert err.value.non_retryable
    assert requests_of(api, "create") == creates and provider_jobs(api, job_id) == []


async def test_no_provider_call_when_the_attempt_cant_be_counted(
    tmp_path: Any, provider: ReplicateProvider, api: httpx.Client
) -> None:
    from core.db import make_engine, make_sessionmaker

    # A database without the jobs table: every write fails, as in an outage.
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        media = activities(make_sessionmaker(engine), provider)
        job_id = uuid.uuid4().hex
        creates = requests_of(api, "create")
        with pytest.raises(Exception, match="jobs"):
            await ActivityEnvironment().run(media.submit, request_for(job_id))
        assert requests_of(api, "create") == creates
        assert provider_jobs(api, job_id) == []
    finally:
        await engine.dispose()


# --- every emulator lists the provider jobs per app job id ----------------------------------------


def test_every_emulator_lists_provider_jobs_per_job_id(
    api: httpx.Client, fal_api: httpx.Client, kie_api: httpx.Client
) -> None:
    job_id = uuid.uuid4().hex
    pred = api.post(
        "/v1/predictions",
        json={"version": VERSION, "input": {"seed": job_id},
              "webhook": DEAD_END.format(provider="replicate", job_id=job_id)},
    )  # fmt: skip
    assert pred.status_code == 201, pred.text
    fal = fal_api.post(
        "/fal-ai/flux/dev",
        json={"prompt": "x", "seed": job_id},
        params={"fal_webhook": DEAD_END.format(provider="fal", job_id=job_id)},
    )
    assert fal.status_code == 200, fal.text
    kie = kie_api.post(
        "/api/v1/jobs/createTask",
        json={"model": "google/nano-banana", "input": {"prompt": "x", "seed": job_id},
              "callBackUrl": DEAD_END.format(provider="kie", job_id=job_id)},
    )  # fmt: skip
    assert kie.json()["code"] == 200, kie.text
    # One without a job id in its URL is nobody's.
    fal_api.post("/fal-ai/flux/dev", json={"prompt": "y"}).raise_for_status()

    for client, provider_job_id in (
        (api, pred.json()["id"]),
        (fal_api, fal.json()["request_id"]),
        (kie_api, kie.json()["data"]["taskId"]),
    ):
        ours = provider_jobs(client, job_id)
        assert [j["id"] for j in ours] == [provider_job_id]
        assert isinstance(ours[0]["status"], str) and ours[0]["canceled"] is False
        everything = client.get("/_emulator/jobs").json()["jobs"]
        assert [j["id"] for j in everything[job_id]] == [provider_job_id]
        assert all(key for key in everything)  # only jobs whose URL names one
    assert provider_jobs(api, uuid.uuid4().hex) == []


async def test_a_429_on_create_pauses_the_providers_line(
    sessions: async_sessionmaker[AsyncSession], provider: ReplicateProvider
) -> None:
    job_id = uuid.uuid4().hex
    await add_job(sessions, job_id)
    told: list[tuple[str, float]] = []

    async def pause(name: str, seconds: float) -> None:
        told.append((name, seconds))

    media = activities(sessions, provider)
    media._on_rate_limited = pause
    with pytest.raises(ApplicationError, match="retry after"):
        await ActivityEnvironment().run(media.submit, request_for(job_id, {"rate_limits": 1}))
    assert [name for name, _ in told] == ["replicate"] and told[0][1] > 0


async def test_the_deadline_goes_with_the_create_as_cancel_after(
    provider: ReplicateProvider, emulator_url: str
) -> None:
    request = request_for(uuid.uuid4().hex, {"stay_starting": True})
    request.cancel_after_seconds = CANCEL_AFTER_ASKED
    created = await provider.submit(request)
    async with httpx.AsyncClient(base_url=emulator_url, trust_env=False) as http:
        response = await http.get(
            f"/v1/predictions/{created.provider_job_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    body = response.json()
    deadline, made = (datetime.fromisoformat(body[k]) for k in ("deadline", "created_at"))
    told = deadline - made
    assert told == CANCEL_AFTER_ROUNDED_UP  # the header's value, rounded up
