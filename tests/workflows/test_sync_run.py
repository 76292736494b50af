"""SyncRunWorkflow logic on the time-skipping test server, with a scripted upstream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from core.contracts import (
    ERR_PROVIDER_RATE_LIMITED,
    ERR_PROVIDER_REJECTED,
    ModuleProgress,
    ModuleStatus,
    PageRequest,
    RunRecord,
    SyncMode,
    SyncRunInput,
    SyncStatus,
)
from workflows.sync_run import SyncRunWorkflow

MODULES = ["vendas", "contas_pagar", "estoque"]


@dataclass
class FakeUpstream:
    """Each module has `pages` pages of 10 rows; hooks inject failures."""

    pages: int = 3
    fail_module: str | None = None
    rate_limited: int = 0  # the next N pages answer 429
    page_delay: float = 0.0
    requests: list[PageRequest] = field(default_factory=list)
    records: list[RunRecord] = field(default_factory=list)
    on_page: Callable[[PageRequest], None] | None = None
    enriched: dict[str, int] = field(default_factory=dict)
    canceled_activities: int = 0
    hold_from: int | None = None  # from this request on, a page lasts until canceled

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="sync.fetch_page")
        async def fetch_page(request: PageRequest) -> ModuleProgress:
            """Up to `max_pages` pages; a cancel ends it after the page under way."""
            progress = ModuleProgress(
                status=ModuleStatus.RUNNING, pages=request.page, cursor=request.cursor
            )
            for n in range(request.max_pages):
                page = asyncio.ensure_future(
                    one_page(replace(request, page=progress.pages, cursor=progress.cursor))
                )
                try:
                    progress = await asyncio.shield(page)
                except ApplicationError:
                    if n:
                        break
                    raise
                except asyncio.CancelledError:  # like the real one: the page under way counts
                    self.canceled_activities += 1
                    return await page
                activity.heartbeat(progress.pages)
                if progress.done:
                    break
            return progress

        async def one_page(request: PageRequest) -> ModuleProgress:
            self.requests.append(request)
            if self.on_page:
                self.on_page(request)
            if self.page_delay:
                await asyncio.sleep(self.page_delay)
            if self.hold_from is not None and len(self.requests) >= self.hold_from:
                while not activity.is_cancelled():
                    activity.heartbeat(request.page)
                    await asyncio.sleep(0.05)
            if request.module == self.fail_module:
                raise ApplicationError(
                    "vw broken: 500", type=ERR_PROVIDER_REJECTED, non_retryable=True
                )
            if self.rate_limited:
                self.rate_limited -= 1
                raise ApplicationError(
                    "429", 30, type=ERR_PROVIDER_RATE_LIMITED, non_retryable=True
                )
            pages = request.page + 1
            enriched = self.enriched.get(request.module, 0) + min(request.enrich, 10)
            self.enriched[request.module] = enriched
            return ModuleProgress(
                status=ModuleStatus.RUNNING,
                processed=10 * pages,
                pages=pages,
                cursor=f"c{pages}",
                done=pages >= self.pages,
                enriched=enriched,
            )

        @activity.defn(name="sync.updated_since")
        async def updated_since(company_id: str, modules: list[str]) -> dict[str, str]:
            return {m: "2025-01-01T00:00:00+00:00" for m in modules}

        @activity.defn(name="sync.record")
        async def record(record: RunRecord) -> None:
            self.records.append(record)

        return [fetch_page, updated_since, record]


@pytest.fixture
async def upstream(env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str, FakeUpstream]]:
    fake = FakeUpstream()
    task_queue = f"sync-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SyncRunWorkflow],
        activities=fake.activities(),
        max_heartbeat_throttle_interval=timedelta(milliseconds=200),  # cancels arrive quickly
    ):
        yield env.client, task_queue, fake


async def start(
    client: Client, tq: str, mode: SyncMode = SyncMode.PERIOD, **kw: Any
) -> WorkflowHandle[Any, Any]:
    run = SyncRunInput(
        run_id=uuid.uuid4().hex,
        company_id="acme",
        mode=mode,
        modules=list(MODULES),
        start_date="2024-12-01",
        end_date="2024-12-31",
        task_queue=tq,
        search_attributes=False,
        **kw,
    )
    return await client.start_workflow(
        SyncRunWorkflow.run, run, id=f"sync-run-{run.run_id}", task_queue=tq
    )


async def pages_requested(fake: FakeUpstream, n: int) -> None:
    for _ in range(500):
        if len(fake.requests) >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"only {len(fake.requests)} pages were requested")


async def test_every_module_pages_to_the_end(upstream) -> None:
    client, tq, fake = upstream
    result = await (await start(client, tq)).result()
    assert result.status == SyncStatus.DONE
    assert {n: p.processed for n, p in result.modules.items()} == {m: 30 for m in MODULES}
    # pages follow each other's cursors, in the seed's module order
    vendas = [r for r in fake.requests if r.module == "vendas"]
    assert [(r.page, r.cursor) for r in vendas] == [(0, None), (1, "c1"), (2, "c2")]
    assert [r.module for r in fake.requests][::3] == MODULES
    done = [
        r
        for r in fake.records
        if r.module_progress and r.module_progress.status == ModuleStatus.DONE
    ]
    assert all(r.cursor_since for r in done) and len(done) == 3
    assert fake.records[-1].status == SyncStatus.DONE


async def test_a_failing_module_is_recorded_and_the_others_go_on(upstream) -> None:
    client, tq, fake = upstream
    fake.fail_module = "contas_pagar"
    result = await (await start(client, tq)).result()
    assert result.status == SyncStatus.FAILED
    assert result.modules["contas_pagar"].status == ModuleStatus.FAILED
    assert result.modules["estoque"].status == ModuleStatus.DONE
    assert result.error_message is not None and "contas_pagar" in result.error_message
    errors = [r for r in fake.records if r.log_level == "error"]
    assert errors and "vw broken" in (errors[0].log_message or "")


async def test_rate_limits_wait_and_lose_nothing(upstream, env: WorkflowEnvironment) -> None:
    client, tq, fake = upstream
    fake.rate_limited = 4  # more than max_retries: 429s don't use retries up
    before = await env.get_current_time()
    result = await (await start(client, tq, max_retries=2)).result()
    assert result.status == SyncStatus.DONE
    assert all(p.processed == 30 for p in result.modules.values())
    waited = await env.get_current_time() - before
    assert waited >= timedelta(minutes=2)  # four 429s, 30 s each, on durable timers


async def test_cancel_stops_the_running_module_at_its_next_page(upstream) -> None:
    client, tq, fake = upstream
    fake.pages = 50
    fake.hold_from = 3  # the cancel lands while the third page is under way
    handle = await start(client, tq)
    await pages_requested(fake, 3)
    await handle.signal(SyncRunWorkflow.cancel, "stop")
    result = await handle.result()
    assert result.status == SyncStatus.CANCELED
    assert result.modules["vendas"].status == ModuleStatus.CANCELED
    assert 0 < result.modules["vendas"].processed < 500
    assert result.modules["estoque"].status == ModuleStatus.CANCELED
    assert {r.module for r in fake.requests} == {"vendas"}


async def test_incremental_runs_pass_each_modules_cursor(upstream) -> None:
    client, tq, fake = upstream
    result = await (await start(client, tq, mode=SyncMode.INCREMENTAL)).result()
    assert result.status == SyncStatus.DONE
    assert {r.updated_since for r in fake.requests} == {"2025-01-01T00:00:00+00:00"}


async def test_concurrency_runs_modules_side_by_side(upstream) -> None:
    client, tq, fake = upstream
    fake.page_delay = 0.05
    result = await (await start(client, tq, concurrency=3)).result()
    assert result.status == SyncStatus.DONE
    first_three = [r.module for r in fake.requests[:3]]
    assert sorted(first_three) == sorted(MODULES)


async def test_progress_query_shows_modules(upstream) -> None:
    client, tq, fake = upstream
    fake.pages = 20
    fake.hold_from = 2  # the cancel lands on a running page: the time-skipping server
    # refuses a cancel of an activity that completed in the same task (sdk-java#2391)
    handle = await start(client, tq)
    await pages_requested(fake, 2)
    state = await handle.query(SyncRunWorkflow.progress)
    assert state.status == SyncStatus.RUNNING and state.current_module == "vendas"
    assert state.modules["vendas"].status == ModuleStatus.RUNNING
    assert state.modules["estoque"].status == ModuleStatus.PENDING
    await handle.signal(SyncRunWorkflow.cancel)
    await handle.result()


async def test_enrichment_budget_is_shared_by_the_modules_of_a_run(upstream) -> None:
    client, tq, fake = upstream
    fake.page_delay = 0.02
    result = await (await start(client, tq, max_enrich=25, concurrency=2, page_size=10)).result()
    assert result.status == SyncStatus.DONE
    assert sum(p.enriched for p in result.modules.values()) == 25
    assert sum(p.enriched for p in result.modules.values()) == 25


async def test_a_long_run_continues_as_new_and_keeps_its_counts(upstream) -> None:
    client, tq, fake = upstream
    fake.pages = 12
    handle = await start(client, tq, concurrency=2, continue_after_events=40, max_enrich=25)
    result = await handle.result()
    assert result.status == SyncStatus.DONE
    assert {n: p.processed for n, p in result.modules.items()} == {m: 120 for m in MODULES}
    # every page asked for once, each module's pages in order
    for module in MODULES:
        pages = [r.page for r in fake.requests if r.module == module]
        assert pages == list(range(12))
    # the enrichment budget crossed the executions: 25 in all, not 25 per execution
    assert sum(p.enriched for p in result.modules.values()) == 25
    handing_over = [r for r in fake.records if "continuing as new" in (r.log_message or "")]
    assert len(handing_over) >= 2
    # the chain: the workflow id's first execution continued as new
    first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    assert (await first.describe()).status.name == "CONTINUED_AS_NEW"
    started = [r for r in fake.records if r.log_message == "module started"]
    assert len(started) == len(MODULES)  # a resumed module is not started again


async def test_cancel_after_continue_as_new_ends_the_run_canceled(upstream) -> None:
    client, tq, fake = upstream
    fake.pages = 200
    fake.hold_from = 12  # the 12th page waits for the cancel: it lands on a running page
    handle = await start(client, tq, continue_after_events=30)
    await pages_requested(fake, 12)  # past the first hand-over
    await handle.signal(SyncRunWorkflow.cancel, "enough")
    result = await handle.result()
    assert result.status == SyncStatus.CANCELED
    assert result.modules["vendas"].status == ModuleStatus.CANCELED
    assert result.modules["vendas"].processed == 10 * len(
        [r for r in fake.requests if r.module == "vendas"]
    )
    assert fake.records[-1].status == SyncStatus.CANCELED


async def test_cancel_reaches_a_multi_page_activity_at_its_next_page(upstream) -> None:
    client, tq, fake = upstream
    fake.pages = 100
    fake.page_delay = 0.1
    handle = await start(client, tq, pages_per_activity=50)
    await pages_requested(fake, 3)
    await handle.signal(SyncRunWorkflow.cancel, "stop")
    result = await handle.result()
    assert result.status == SyncStatus.CANCELED
    assert fake.canceled_activities == 1
    vendas = result.modules["vendas"]
    # stopped well before the activity's 50 pages, with every page it fetched counted
    assert vendas.pages == len(fake.requests) < 50
    assert vendas.processed == 10 * vendas.pages


async def test_a_scheduled_run_that_finds_its_company_busy_ends_skipped(
    env: WorkflowEnvironment,
) -> None:
    """Started by a schedule (no run id) while a manual run holds the company: SKIPPED, not
    CANCELED, and no module is fetched."""
    fake = FakeUpstream()
    task_queue = f"sync-{uuid.uuid4()}"

    @activity.defn(name="sync.open_run")
    async def open_run(run: SyncRunInput) -> str | None:
        return "busy-run"

    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[SyncRunWorkflow],
        activities=[*fake.activities(), open_run],
    ):
        handle = await env.client.start_workflow(
            SyncRunWorkflow.run,
            SyncRunInput(
                run_id="", company_id="acme", mode=SyncMode.INCREMENTAL,
                modules=list(MODULES), task_queue=task_queue, search_attributes=False,
            ),
            id=f"sync-run-scheduled-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )  # fmt: skip
        result = await handle.result()
    assert result.status == SyncStatus.SKIPPED
    assert result.error_message and "busy-run" in result.error_message
    assert fake.requests == []
