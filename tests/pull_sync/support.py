"""Helpers of the pull-sync tests: activities wired to a test DB and the emulator, and counts."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.pull_sync import PullConfig, PullSyncActivities, client_fetcher
from core.outbound import OutboundFetcher
from core.pull_contracts import BatchResult, PullBatch, PullMode
from core.pull_models import PullClient, PullRecord
from core.pull_store import register
from core.settings import Settings

MAX_FAILURES = 3
MAX_RECORDS = 20
TIMEOUT = 1.0


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "pull_sync_timeout_seconds": TIMEOUT,
        "pull_sync_max_records": MAX_RECORDS,
        "pull_sync_max_failures": MAX_FAILURES,
        "pull_sync_max_response_bytes": 256 * 1024,
        "pull_sync_batch_size": 2,
        **overrides,
    }
    return Settings(**values)


def activities(
    sessions: async_sessionmaker[AsyncSession], fetcher: OutboundFetcher, config: Settings
) -> PullSyncActivities:
    return PullSyncActivities(
        sessions=sessions, fetcher=fetcher, config=PullConfig.from_settings(config)
    )


def fetcher(config: Settings) -> OutboundFetcher:
    return client_fetcher(config)


def emulate(control: httpx.Client, client_id: str, records: int) -> None:
    response = control.post(
        "/_emulator/clients",
        json={"client_id": client_id, "user_id": f"u-{client_id}", "records": records},
    )
    assert response.status_code == 201, response.text


def set_faults(control: httpx.Client, client_id: str, **switches: object) -> None:
    control.put(f"/_emulator/clients/{client_id}/faults", json=switches).raise_for_status()


def emulator_client(control: httpx.Client, client_id: str) -> dict[str, Any]:
    data: dict[str, Any] = control.get(f"/_emulator/clients/{client_id}").json()
    return data


async def register_emulated(
    sessions: async_sessionmaker[AsyncSession], base_url: str, client_id: str
) -> str:
    async with sessions() as session, session.begin():
        client, _ = await register(
            session, url=f"{base_url}/c/{client_id}", user_id=f"u-{client_id}",
            client_type="web", capabilities=["capture"], by="test",
        )  # fmt: skip
        return client.id


async def pull(
    acts: PullSyncActivities, ids: list[str], mode: PullMode = PullMode.ALL
) -> BatchResult:
    return await acts.pull_batch(PullBatch(cycle_id="test", mode=mode.value, client_ids=ids))


async def stored(sessions: async_sessionmaker[AsyncSession], client_id: str) -> list[str]:
    async with sessions() as session:
        return list(
            (
                await session.scalars(
                    select(PullRecord.record_id)
                    .where(PullRecord.client_id == client_id)
                    .order_by(PullRecord.record_id)
                )
            ).all()
        )


async def stored_total(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(PullRecord)) or 0)


async def client_row(sessions: async_sessionmaker[AsyncSession], client_id: str) -> PullClient:
    async with sessions() as session:
        row = await session.get(PullClient, client_id)
        assert row is not None
        return row


def add_records(control: httpx.Client, client_id: str, count: int) -> None:
    response = control.post(f"/_emulator/clients/{client_id}/records", json={"count": count})
    response.raise_for_status()


def add_capture(control: httpx.Client, client_id: str, body: dict[str, Any]) -> None:
    control.post(f"/c/{client_id}/api/client/add-capture", json=body).raise_for_status()
