"""Starting, cancelling and scheduling a run's workflow (SyncRunWorkflow, by name).

One builder makes every run's input (`sync_run_input`): a run the API starts and a run a
schedule starts differ only in what they name (the schedule's runs make their own id and
sync from each module's cursor), never in the settings they run with.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from core.contracts import (
    CANCEL_SIGNAL,
    SA_COMPANY,
    SA_STATUS,
    SYNC_RUN_WORKFLOW,
    SyncMode,
    SyncRunInput,
    SyncStatus,
    sync_run_workflow_id,
)
from core.models import SyncRun
from core.settings import Settings
from core.starts import StartResult, signal_workflow, start_resolved
from sync_modules.registry import all_modules

# One Temporal Schedule per company starts its incremental runs.
SCHEDULE_PREFIX = "sync-incremental-"


def sync_run_input(
    settings: Settings,
    *,
    run_id: str,
    company_id: str,
    mode: SyncMode,
    modules: list[str],
    start_date: str | None = None,
    end_date: str | None = None,
) -> SyncRunInput:
    """A run's workflow input; `run_id` "" lets the workflow make one (a schedule's runs)."""
    return SyncRunInput(
        run_id=run_id, company_id=company_id, mode=mode, modules=modules,
        start_date=start_date, end_date=end_date,
        page_size=settings.sync_page_size, pages_per_activity=settings.sync_pages_per_activity,
        concurrency=settings.sync_concurrency, max_retries=settings.sync_max_retries,
        task_queue=settings.erp_task_queue, max_enrich=settings.max_enrich_per_run,
    )  # fmt: skip


async def start_run_workflow(client: Client, settings: Settings, run: SyncRun) -> None:
    """Start the run's workflow; refused (WorkflowAlreadyStartedError) if it ever had one."""
    mode = SyncMode(run.mode)
    await client.start_workflow(
        SYNC_RUN_WORKFLOW,
        sync_run_input(
            settings, run_id=run.id, company_id=run.company_id, mode=mode,
            modules=list(run.modules),
            start_date=run.start_date.isoformat() if run.start_date else None,
            end_date=run.end_date.isoformat() if run.end_date else None,
        ),
        id=sync_run_workflow_id(run.id),
        task_queue=settings.sync_task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(SA_COMPANY, run.company_id),
            SearchAttributePair(SA_STATUS, SyncStatus.QUEUED.value),
        ]),
        static_summary=f"{mode.value} sync · company {run.company_id}"
        + (f" · {run.start_date}..{run.end_date}" if run.start_date else ""),
    )  # fmt: skip


async def start_run(client: Client, settings: Settings, run: SyncRun) -> StartResult:
    """Start the workflow of a recorded run, resolving a lost answer."""
    return await start_resolved(
        client, sync_run_workflow_id(run.id), lambda: start_run_workflow(client, settings, run)
    )


async def cancel_run(client: Client, run_id: str, reason: str) -> bool:
    """Tell the run's workflow to stop before its running module's next page; False when it
    has no running workflow. Raises `core.starts.Unreachable` when Temporal can't be asked."""
    return await signal_workflow(client, sync_run_workflow_id(run_id), CANCEL_SIGNAL, reason)


def schedule_id(company_id: str) -> str:
    return f"{SCHEDULE_PREFIX}{company_id}"


def scheduled_run(settings: Settings, company_id: str) -> ScheduleActionStartWorkflow:
    """What the company's schedule starts: an incremental run of every module."""
    return ScheduleActionStartWorkflow(
        SYNC_RUN_WORKFLOW,
        sync_run_input(
            settings,
            run_id="",  # the workflow makes one per run
            company_id=company_id,
            mode=SyncMode.INCREMENTAL,
            modules=list(all_modules()),
        ),
        id=f"sync-run-scheduled-{company_id}",
        task_queue=settings.sync_task_queue,
        typed_search_attributes=TypedSearchAttributes(
            [SearchAttributePair(SA_COMPANY, company_id)]
        ),
    )


def incremental_schedule(
    settings: Settings, company_id: str, every: timedelta, *, paused: bool, note: str
) -> Schedule:
    """The company's schedule: an incremental run every `every`; a run still going when the
    next is due skips it (and a run that finds a manual one going records itself skipped)."""
    return Schedule(
        action=scheduled_run(settings, company_id),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=paused, note=note),
    )
