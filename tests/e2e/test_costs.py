"""Cost per job end to end: every job that succeeds at each provider's emulator carries the
provider's own accounting priced by PROVIDER_PRICES (the defaults here), whether it ended by
webhook or by poll, and GET /v1/usage sums to exactly the jobs' costs.

The emulators report their planned run time (`_emulator` seconds) as the accounting, and KIE a
fixed number of credits per output, so each cost is known in advance.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import httpx
import pytest

from core.settings import DEFAULT_PROVIDER_PRICES
from emulators.kie.records import IMAGE_CREDITS
from tests.e2e.conftest import E2E
from tests.e2e.test_media_jobs import create, wait_job

pytestmark = pytest.mark.e2e

RUN_SECONDS = 0.3
# Per provider: the `_emulator` switch of a run's length, the accounting field, its unit price.
REPLICATE_PRICE = DEFAULT_PROVIDER_PRICES["replicate"]["hardware"]["gpu-a100-large"]
FAL_PRICE = DEFAULT_PROVIDER_PRICES["fal"]["default"]
KIE_PRICE = DEFAULT_PROVIDER_PRICES["kie"]["default"]


def job_input(provider: str, **faults: Any) -> dict[str, Any]:
    """A generation running RUN_SECONDS, its prompt its own (emulators count faults per input)."""
    length = {"replicate": "processing_seconds", "fal": "run_seconds", "kie": "generating_seconds"}
    body: dict[str, Any] = {"prompt": f"a red fox, take {uuid.uuid4().hex[:8]}"}
    if provider != "replicate":
        body["num_images"] = 1
    body["_emulator"] = {length[provider]: RUN_SECONDS, **faults}
    return body


def expected_cost(job: dict[str, Any]) -> tuple[str, float]:
    """(accounting source, USD) the job must show."""
    provider = job["provider"]
    if provider == "replicate":
        return "replicate:metrics.predict_time", RUN_SECONDS * REPLICATE_PRICE
    if provider == "fal":
        return "fal:metrics.inference_time", RUN_SECONDS * FAL_PRICE
    return "kie:creditsConsumed", IMAGE_CREDITS * len(job["outputs"]) * KIE_PRICE


async def succeeded_costs(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every succeeded job of the caller (all pages)."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"status": "succeeded", "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/jobs", params=params)).json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


@pytest.mark.parametrize("provider", ["replicate", "fal", "kie"])
async def test_every_succeeded_job_carries_its_cost_by_webhook_or_poll(
    e2e: E2E, provider: str
) -> None:
    async with e2e.api("bob") as bob:
        by_webhook = await create(bob, provider=provider, input=job_input(provider))
        by_poll = await create(
            bob, provider=provider, input=job_input(provider, drop_webhooks=True)
        )
        done = [await wait_job(bob, job["id"]) for job in (by_webhook, by_poll)]
    for job in done:
        assert job["status"] == "succeeded", job
        source, usd = expected_cost(job)
        assert job["cost_source"] == source
        assert job["cost_usd"] == pytest.approx(usd, abs=1e-8), job["cost_detail"]
        assert job["cost_detail"]["unit_price_usd"] > 0
    assert done[1]["webhook_count"] == 0  # the second one really ended by poll


async def test_usage_sums_to_the_jobs_costs(e2e: E2E) -> None:
    async with e2e.api("bob") as bob:
        for provider in ("replicate", "fal", "kie"):
            job = await create(bob, provider=provider, input=job_input(provider))
            await wait_job(bob, job["id"])
        # Other tests' jobs of bob may still be finishing: read until two reads agree.
        for _ in range(20):
            before = await succeeded_costs(bob)
            by_provider = (await bob.get("/v1/usage", params={"group_by": "provider"})).json()
            by_day = (await bob.get("/v1/usage", params={"group_by": "day"})).json()
            if before == await succeeded_costs(bob):
                break
            await asyncio.sleep(0.5)
    assert by_provider["user_id"] == "bob"
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for job in before:
        sums[job["provider"]] += job["cost_usd"] or 0.0
        counts[job["provider"]] += 1
    groups = {g["key"]: g for g in by_provider["groups"]}
    assert set(groups) == set(sums) >= {"replicate", "fal", "kie"}
    for name, group in groups.items():
        assert group["cost_usd"] == pytest.approx(sums[name], abs=1e-6), name
        assert group["jobs"] == counts[name]
    total = sum(sums.values())
    assert total > 0
    assert by_provider["cost_usd"] == pytest.approx(total, abs=1e-6)
    assert by_day["cost_usd"] == pytest.approx(total, abs=1e-6)
    assert by_provider["jobs"] == len(before)
