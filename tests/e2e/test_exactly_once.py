"""One provider job per job, whatever fails around the submit (issue 10, item 1).

Each test makes the submit's outcome ambiguous in a different way and then counts the
predictions the Replicate emulator holds for the job (`GET /_emulator/jobs?job_id=`): the
database gone while the create's answer is on its way, the answer itself lost, the worker
SIGKILLed while the create is in flight. Before the fix each of them made a second prediction.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.e2e.conftest import E2E, LOCAL_ONLY, VARIANTS
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e

# The database outage needs PostgreSQL behind its proxy (a SQLite file can't go away).
POSTGRES_ONLY = pytest.mark.parametrize("e2e", VARIANTS[1:], indirect=True)


async def provider_jobs(e2e: E2E, job_id: str) -> list[dict[str, Any]]:
    async with e2e.emulator() as emulator:
        response = await emulator.get("/_emulator/jobs", params={"job_id": job_id})
        response.raise_for_status()
        jobs: list[dict[str, Any]] = response.json()["provider_jobs"]
        return jobs


async def wait_created(e2e: E2E, job_id: str, within: float = 30) -> None:
    """Until the emulator holds a prediction for the job (its create's answer may be pending)."""
    deadline = time.monotonic() + within
    while not await provider_jobs(e2e, job_id):
        if time.monotonic() > deadline:
            raise AssertionError(f"no prediction was created for job {job_id}")
        await asyncio.sleep(0.1)


@POSTGRES_ONLY
async def test_database_down_during_the_submit_makes_one_prediction(e2e: E2E) -> None:
    assert e2e.pg_proxy is not None
    async with e2e.api() as api:
        body = {"prompt": "the database goes away", "_emulator": {"latency_seconds": 3}}
        job = await create(api, input=body)
        await wait_created(e2e, job["id"])  # the create is in flight; its answer comes in 3 s
        e2e.pg_proxy.down()
        try:
            # The answer arrives while the database is away: recording it fails meanwhile.
            await asyncio.sleep(6)
        finally:
            e2e.pg_proxy.up()
        done = await wait_job(api, job["id"], within=120)
    assert done["status"] == "succeeded", done
    jobs = await provider_jobs(e2e, job["id"])
    assert [j["id"] for j in jobs] == [done["provider_job_id"]]


async def test_a_create_whose_answer_is_lost_makes_one_prediction(e2e: E2E) -> None:
    async with e2e.api() as api:
        body = {"prompt": "the answer is lost", "_emulator": {"lost_create_responses": 1}}
        job = await create(api, input=body)
        done = await wait_job(api, job["id"], within=60)
    assert done["status"] == "succeeded", done
    jobs = await provider_jobs(e2e, job["id"])
    # The retried submit found the prediction the first attempt made and adopted it.
    assert [j["id"] for j in jobs] == [done["provider_job_id"]]
    assert jobs[0]["canceled"] is False


@LOCAL_ONLY
async def test_a_worker_killed_mid_submit_makes_one_prediction(e2e: E2E) -> None:
    async with e2e.api() as api:
        body = {"prompt": "the worker dies", "_emulator": {"latency_seconds": 20}}
        job = await create(api, input=body)
        await wait_created(e2e, job["id"])
        e2e.stack.kill_worker()  # mid-call: the local activity starts over on the next worker
        e2e.stack.start_worker()
        done = await wait_job(api, job["id"], within=120)
    assert done["status"] == "succeeded", done
    jobs = await provider_jobs(e2e, job["id"])
    # The new worker's attempt found the prediction the killed one created: no second one.
    assert [j["id"] for j in jobs] == [done["provider_job_id"]]


# fal and KIE can't be asked which jobs exist: the retried submit creates nothing, and the job
# follows the one the killed attempt made once its webhook names it.
SLOW_CREATE = {"fal": "latency_seconds", "kie": "latency_seconds"}


async def provider_jobs_at(e2e: E2E, provider: str, job_id: str) -> list[dict[str, Any]]:
    async with e2e.provider_emulator(provider) as emulator:
        response = await emulator.get("/_emulator/jobs", params={"job_id": job_id})
        response.raise_for_status()
        jobs: list[dict[str, Any]] = response.json()["provider_jobs"]
        return jobs


@LOCAL_ONLY
@pytest.mark.parametrize("provider", ["fal", "kie"])
async def test_a_worker_killed_mid_submit_makes_one_job_where_none_can_be_looked_up(
    e2e: E2E, provider: str
) -> None:
    async with e2e.api() as api:
        body = {"prompt": "the worker dies", "_emulator": {SLOW_CREATE[provider]: 20}}
        job = await create(api, provider=provider, input=body)
        deadline = time.monotonic() + 30
        while not await provider_jobs_at(e2e, provider, job["id"]):
            assert time.monotonic() < deadline, f"no {provider} job was created"
            await asyncio.sleep(0.1)
        e2e.stack.kill_worker()  # mid-call: the local activity starts over on the next worker
        e2e.stack.start_worker()
        done = await wait_job(api, job["id"], within=120)
    assert done["status"] == "succeeded", done
    jobs = await provider_jobs_at(e2e, provider, job["id"])
    # The new worker's attempt created nothing; the webhook named the killed one's job.
    assert [j["id"] for j in jobs] == [done["provider_job_id"]]
    assert done["outputs"], done
