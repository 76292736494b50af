"""`media.store_outputs` records what the job cost with its success: from the snapshot's
accounting, or (fal: its webhook carries none) from one read of the provider's; a read that
fails leaves the cost unknown, never the job unstored.

Real pieces as in test_store_outputs: a migrated SQLite app DB, LocalStorage, a loopback HTTP
server serving the output, the guarded fetcher and the activity under ActivityEnvironment.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.media import MediaActivities
from core.contracts import (
    JobKind,
    JobStatus,
    ProviderPhase,
    ProviderRef,
    ProviderSnapshot,
    StoreRequest,
)
from core.models import Job
from core.outbound import OutboundFetcher, OutboundPolicy, normalise_origin
from core.settings import Settings
from providers.base import Provider
from storage.local import LocalStorage
from tests.activities.test_store_outputs import file_bytes
from tests.storage.http_source import HttpSource

PRICES = {
    "replicate": {"hardware": {"gpu-h100": 0.001525}, "default": "gpu-h100"},
    "fal": {"default": 0.0005},
}


class FalAccounting:
    """A provider whose webhooks lack accounting: answers `usage` (or fails), and counts."""

    def __init__(self, usage: dict[str, Any] | Exception) -> None:
        self._usage = usage
        self.asked: list[ProviderRef] = []

    async def usage(self, ref: ProviderRef) -> dict[str, Any]:
        self.asked.append(ref)
        if isinstance(self._usage, Exception):
            raise self._usage
        return self._usage


@dataclasses.dataclass
class Rig:
    sessions: async_sessionmaker[AsyncSession]
    url: str
    fetcher: OutboundFetcher
    storage: LocalStorage

    def media(self, **providers: object) -> MediaActivities:
        settings = Settings(_env_file=None, provider_prices=PRICES)  # type: ignore[call-arg,arg-type]
        return MediaActivities(
            sessions=self.sessions,
            storage=self.storage,
            providers=cast(dict[str, Provider], providers),
            fetcher=self.fetcher,
            settings=settings,
        )

    async def store(
        self, media: MediaActivities, provider: str, model: str, usage: dict[str, Any]
    ) -> Job:
        job_id = uuid.uuid4().hex
        async with self.sessions() as session, session.begin():
            session.add(
                Job(id=job_id, user_id="alice", kind="generation", provider=provider,
                    model=model, input={}, status=JobStatus.PROCESSING.value,
                    provider_job_id="p-1")
            )  # fmt: skip
        snapshot = ProviderSnapshot(
            provider_job_id="p-1",
            provider_status="succeeded",
            phase=ProviderPhase.SUCCEEDED,
            output_urls=[self.url],
            usage=usage,
        )
        request = StoreRequest(job_id=job_id, user_id="alice", kind=JobKind.GENERATION,
                               snapshot=snapshot, provider=provider)  # fmt: skip
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, heartbeat_timeout=None)
        await env.run(media.store_outputs, request)
        async with self.sessions() as session:
            job = await session.scalar(select(Job).where(Job.id == job_id))
        assert job is not None and job.status == JobStatus.SUCCEEDED.value
        return job


@pytest.fixture
def source() -> Iterator[HttpSource]:
    with HttpSource() as server:
        yield server


@pytest.fixture
async def rig(
    sessions: async_sessionmaker[AsyncSession], source: HttpSource, tmp_path: Path
) -> AsyncIterator[Rig]:
    policy = OutboundPolicy(allowed_origins=frozenset({normalise_origin(source.base_url)}))
    url = source.add("/out-0.png", file_bytes("png", "costs"))
    async with OutboundFetcher(policy) as fetcher:
        yield Rig(sessions, url, fetcher, LocalStorage(tmp_path / "storage"))


async def test_the_snapshots_accounting_is_priced_with_the_success(rig: Rig) -> None:
    job = await rig.store(rig.media(), "replicate", "acme/sdxl:v1", {"predict_time": 2.0})
    assert job.cost_usd == pytest.approx(2.0 * 0.001525)
    assert job.cost_source == "replicate:metrics.predict_time"
    assert job.cost_detail == {
        "predict_time": 2.0,
        "unit_price_usd": 0.001525,
        "hardware": "gpu-h100",
    }


async def test_accounting_missing_from_a_webhook_is_read_from_the_provider(rig: Rig) -> None:
    fal = FalAccounting({"inference_time": 4.0})
    job = await rig.store(rig.media(fal=fal), "fal", "fal-ai/flux/dev", {})
    assert [(r.provider_job_id, r.model) for r in fal.asked] == [("p-1", "fal-ai/flux/dev")]
    assert job.cost_usd == pytest.approx(4.0 * 0.0005)
    assert job.cost_source == "fal:metrics.inference_time"


async def test_a_failed_read_leaves_the_cost_unknown_and_the_job_stored(rig: Rig) -> None:
    fal = FalAccounting(httpx.ConnectError("refused"))
    job = await rig.store(rig.media(fal=fal), "fal", "fal-ai/flux/dev", {})
    assert len(fal.asked) == 1
    assert job.cost_usd is None and job.cost_source is None and job.outputs


async def test_no_accounting_no_cost(rig: Rig) -> None:
    job = await rig.store(rig.media(), "replicate", "acme/sdxl", {})
    assert job.cost_usd is None
