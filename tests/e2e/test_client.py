"""The Python client (`autosync_client`) against the real API: blocking and asyncio calls,
cursor paging, errors, and watches on the live stream and by polling."""

from __future__ import annotations

import asyncio

import pytest

from autosync_client import ApiError, AsyncClient, Client
from tests.e2e.conftest import E2E, KEYS, LOCAL_ONLY

pytestmark = [pytest.mark.e2e, LOCAL_ONLY]


def blocking(e2e: E2E, user: str = "alice") -> Client:
    return Client(e2e.stack.api_url, KEYS[user])


def asynchronous(e2e: E2E, user: str = "alice") -> AsyncClient:
    return AsyncClient(e2e.stack.api_url, KEYS[user])


async def test_blocking_client_pages_every_job_once(e2e: E2E) -> None:
    def run() -> tuple[list[str], list[str], list[str]]:
        with blocking(e2e, "bob") as api:
            made = [api.create_job("generation", {"prompt": f"p{i}"}).id for i in range(3)]
            paged = [job.id for job in api.iter_jobs(page_size=2)]
            first = [job.id for job in api.list_jobs(limit=100).items]
        return made, paged, first

    made, paged, first = await asyncio.to_thread(run)
    assert paged == first  # fewer than 100: one page holds them all, in the same order
    assert paged[:3] == made[::-1] and len(set(paged)) == len(paged)


async def test_errors_carry_the_apis_answer(e2e: E2E) -> None:
    async with asynchronous(e2e) as api:
        with pytest.raises(ApiError) as missing:
            await api.get_job("0" * 32)
        with pytest.raises(ApiError) as forbidden:
            await api.list_sync_runs()
        with pytest.raises(ApiError) as invalid:
            await api.create_job("generation", {})
    assert (missing.value.status_code, missing.value.code) == (404, "not_found")
    assert missing.value.message == f"job {'0' * 32} not found"
    assert (forbidden.value.status_code, forbidden.value.code) == (403, "forbidden")
    assert invalid.value.status_code == 422 and invalid.value.code == "validation_error"


async def test_async_watch_follows_a_job_on_the_stream(e2e: E2E) -> None:
    async with asynchronous(e2e) as api:
        job = await api.create_job("generation", {"prompt": "a heron"})
        updates = [u async for u in api.watch_job(job.id)]
        final = await api.get_job(job.id)
    assert updates[-1].status == "succeeded" == final.status
    assert any(u.event_id is not None for u in updates)
    assert len(updates[-1].outputs) == len(final.outputs) >= 1


async def test_watch_by_polling_ends_the_same(e2e: E2E) -> None:
    def run() -> list[str]:
        with blocking(e2e) as api:
            job = api.create_job("generation", {"prompt": "a crane"})
            return [u.status for u in api.watch_job(job.id, stream=False, poll_interval=0.2)]

    statuses = await asyncio.to_thread(run)
    assert statuses[-1] == "succeeded"
    assert len(statuses) == len(set(statuses))  # each change once


async def test_async_watch_run_reports_modules_logs_and_the_end(e2e: E2E) -> None:
    async with asynchronous(e2e, "admin") as api:
        run = await api.start_sync_run(
            "acme", mode="period", month="2025-08", modules=["contas_pagar"]
        )
        updates = [u async for u in api.watch_run(run.id)]
        final = await api.get_sync_run(run.id)
        logs = [line async for line in api.iter_logs(run.id, page_size=2)]
    assert updates[-1].kind == "status" and updates[-1].status == "DONE" == final.status
    progress = [u.progress for u in updates if u.kind == "module" and u.progress]
    assert progress and progress[-1].processed == final.modules["contas_pagar"].processed > 0
    assert any(u.kind == "log" for u in updates)
    ids = [line.id or 0 for line in logs]
    assert ids and ids == sorted(set(ids))  # paged, each line once


async def test_blocking_watch_run_by_polling(e2e: E2E) -> None:
    def run() -> tuple[list[str], str]:
        with blocking(e2e, "admin") as api:
            started = api.start_sync_run("globex", mode="period", month="2025-08",
                                         modules=["estoque"])  # fmt: skip
            kinds = [u.kind for u in api.watch_run(started.id, stream=False, poll_interval=0.2)]
            return kinds, api.get_sync_run(started.id).status

    kinds, status = await asyncio.to_thread(run)
    assert status == "DONE" and kinds[-1] == "status"
    assert "module" in kinds and "log" in kinds
