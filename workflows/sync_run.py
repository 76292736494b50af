"""SyncRunWorkflow: one run of a company's sync, module by module, page by page.

Pages are fetched by `sync.fetch_page` activities, a few pages each, on the rate-limited ERP
task queue, so the upstream limit holds for every run and worker together and a crash loses
nothing: the next attempt resumes at the page after the last one committed. A failing module
is recorded and the others go on; `cancel` stops the running module before its next page.

A long run (thousands of pages) continues as new when its history grows too long: the
modules stop before their next page and the next execution picks them up where they were.

Changing what a page carries or how modules are ordered changes the workflow's shape: keep
replay histories passing, or version the change.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError
from temporalio.workflow import ActivityCancellationType

# Contracts and pure helpers only: activities are called by name (see core.contracts).
with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        CANCEL_SIGNAL,
        ERR_PROVIDER_RATE_LIMITED,
        SA_MODULE,
        SA_STATUS,
        SYNC_FETCH_PAGES,
        SYNC_OPEN_RUN,
        SYNC_RECORD,
        SYNC_RUN_WORKFLOW,
        SYNC_UPDATED_SINCE,
        ModuleProgress,
        ModuleStatus,
        PageRequest,
        RunRecord,
        SyncMode,
        SyncResume,
        SyncRunInput,
        SyncRunState,
        SyncStatus,
    )
    from workflows.policies import RECORD_RETRY, describe_failure, page_retry

# Incremental cursors overlap the previous run a little: upserts make the overlap harmless.
CURSOR_OVERLAP = timedelta(minutes=1)
DEFAULT_RETRY_AFTER = 1.0
# A skipped scheduled run ends SKIPPED (before: CANCELED, with every module pending).
SKIPPED_STATUS_PATCH = "sync-run-skipped-status"


@dataclass
class SyncRunResult:
    status: SyncStatus
    modules: dict[str, ModuleProgress] = field(default_factory=dict)
    error_message: str | None = None


@workflow.defn(name=SYNC_RUN_WORKFLOW)
class SyncRunWorkflow:
    @workflow.init
    def __init__(self, run: SyncRunInput) -> None:
        self._run = run
        self._status = SyncStatus.QUEUED
        self._current: str | None = None
        self._modules = {name: ModuleProgress() for name in run.modules}
        self._cancel_reason: str | None = None
        self._error: str | None = None
        # Enrichment budget left for the run; a page reserves its share before it runs.
        self._enrich_left = run.max_enrich
        if run.resume is not None:
            self._status = SyncStatus.RUNNING
            self._modules = {name: replace(p) for name, p in run.resume.modules.items()}
            self._enrich_left = run.resume.enrich_left
        # Set once the history is long enough: modules stop before their next page.
        self._handing_over = False
        # The page activity under way per module: a cancel stops each at its next page.
        self._fetching: dict[str, workflow.ActivityHandle[ModuleProgress]] = {}

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self, reason: str = "canceled by user") -> None:
        if self._status in (SyncStatus.QUEUED, SyncStatus.RUNNING):
            self._cancel_reason = self._cancel_reason or reason or "canceled by user"
            for fetching in self._fetching.values():
                fetching.cancel()  # the activity finishes its page and returns

    @workflow.query
    def progress(self) -> SyncRunState:
        return SyncRunState(
            run_id=self._run.run_id,
            company_id=self._run.company_id,
            status=self._status,
            current_module=self._current,
            modules={name: replace(p) for name, p in self._modules.items()},
            cancel_requested=self._cancel_reason is not None,
            error_message=self._error,
        )

    @workflow.run
    async def run(self, run: SyncRunInput) -> SyncRunResult:
        if run.resume is not None:
            since, cursor_since = run.resume.since, run.resume.cursor_since
            self._publish()
        else:
            opened = await self._open(run)
            if opened is None:
                return SyncRunResult(status=self._status, error_message=self._error)
            run, since, cursor_since = opened

        slots = asyncio.Semaphore(max(1, run.concurrency))

        async def one(name: str) -> None:
            async with slots:
                await self._run_module(name, since.get(name), cursor_since)

        while True:
            self._handing_over = False
            await asyncio.gather(*(one(name) for name in run.modules))
            if not self._handing_over:
                break
            if self._cancel_reason is None:
                await self._continue_as_new(run, since, cursor_since)
            # A cancel came while handing over: another pass lets the modules left end canceled.

        failed = [n for n, p in self._modules.items() if p.status == ModuleStatus.FAILED]
        if self._cancel_reason is not None:
            status, self._error = SyncStatus.CANCELED, self._cancel_reason
        elif failed:
            status = SyncStatus.FAILED
            self._error = "failed modules: " + ", ".join(
                f"{n} ({self._modules[n].error})" for n in failed
            )
        else:
            status = SyncStatus.DONE
        self._status = status
        self._current = None
        counts = {n: p.processed for n, p in self._modules.items()}
        await self._record(
            RunRecord(
                run_id=run.run_id,
                status=status,
                error_message=self._error,
                log_level="error" if status == SyncStatus.FAILED else "info",
                log_message=f"run {status.value.lower()}"
                + (f": {self._error}" if self._error else ""),
                log_metadata={"processed": counts},
            )
        )
        self._publish()
        return SyncRunResult(status=status, modules=dict(self._modules), error_message=self._error)

    async def _open(self, run: SyncRunInput) -> tuple[SyncRunInput, dict[str, str], str] | None:
        """Start the run: its record, its RUNNING status, each module's `updated_since`.

        Returns the run (with its id, for a scheduled one), `since` and the cursor the modules
        commit when they end; None when a scheduled run is skipped for a busy company.
        """
        started = workflow.now()
        if not run.run_id:
            # Started by a schedule: the run has no id nor record yet.
            run = replace(run, run_id=workflow.uuid4().hex)
            self._run = run
            busy: str | None = await workflow.execute_local_activity(
                SYNC_OPEN_RUN,
                run,
                # The busy run's id or None: JSON gives it back as it is, no result_type needed
                # (and `str | None` is no `type` to mypy).
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RECORD_RETRY,
            )
            if busy is not None:
                # Runs from before SKIPPED existed ended (and recorded themselves) CANCELED.
                skipped = workflow.patched(SKIPPED_STATUS_PATCH)
                self._status = SyncStatus.SKIPPED if skipped else SyncStatus.CANCELED
                self._error = f"skipped: run {busy} of company {run.company_id} is in progress"
                self._publish()
                return None
        self._status = SyncStatus.RUNNING
        self._publish()
        await self._record(
            RunRecord(
                run_id=run.run_id,
                status=SyncStatus.RUNNING,
                log_level="info",
                log_message=f"{run.mode.value} sync of {len(run.modules)} modules started",
                log_metadata={
                    "modules": run.modules,
                    "start_date": run.start_date,
                    "end_date": run.end_date,
                },
            )
        )
        since: dict[str, str] = {}
        if run.mode == SyncMode.INCREMENTAL:
            since = await workflow.execute_local_activity(
                SYNC_UPDATED_SINCE,
                args=[run.company_id, run.modules],
                result_type=dict[str, str],
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RECORD_RETRY,
            )
        return run, since, (started - CURSOR_OVERLAP).isoformat()

    def _history_is_long(self) -> bool:
        """Whether to hand over to a new execution before the next page (sticky once true)."""
        if not self._handing_over:
            info = workflow.info()
            limit = self._run.continue_after_events
            if limit:
                self._handing_over = info.get_current_history_length() >= limit
            else:
                self._handing_over = info.is_continue_as_new_suggested()
        return self._handing_over

    async def _continue_as_new(
        self, run: SyncRunInput, since: dict[str, str], cursor_since: str
    ) -> None:
        """Hand the run over to a new execution, unless a cancel arrives first."""
        executions = run.resume.executions + 1 if run.resume is not None else 1
        events = workflow.info().get_current_history_length()
        await self._record(
            RunRecord(
                run_id=run.run_id,
                log_level="info",
                log_message=f"continuing as new after {events} history events",
                log_metadata={"executions": executions + 1},
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._cancel_reason is not None:
            return  # canceled meanwhile: this execution ends the run
        resume = SyncResume(
            modules={name: replace(p) for name, p in self._modules.items()},
            since=since,
            cursor_since=cursor_since,
            enrich_left=self._enrich_left,
            executions=executions,
        )
        workflow.continue_as_new(replace(run, resume=resume))

    async def _run_module(self, name: str, updated_since: str | None, cursor_since: str) -> None:
        run = self._run
        progress = self._modules[name]
        if progress.status in (ModuleStatus.DONE, ModuleStatus.FAILED, ModuleStatus.CANCELED):
            return  # finished in an earlier execution or pass
        if self._cancel_reason is not None:
            await self._module_ends(
                name,
                replace(progress, status=ModuleStatus.CANCELED),
                "warn",
                "not started: the run was canceled",
            )
            return
        if self._history_is_long():
            return  # not started: the next execution starts it
        if progress.status == ModuleStatus.PENDING:
            progress = replace(progress, status=ModuleStatus.RUNNING)
            self._modules[name] = progress
            self._current = name
            self._publish()
            await self._record(
                RunRecord(
                    run_id=run.run_id,
                    current_module=name,
                    module=name,
                    module_progress=progress,
                    log_level="info",
                    log_message="module started",
                )
            )
        else:
            self._current = name
        while not progress.done:
            if self._cancel_reason is not None:
                await self._module_ends(
                    name,
                    replace(progress, status=ModuleStatus.CANCELED),
                    "warn",
                    f"canceled after {progress.pages} pages; stored rows are kept",
                )
                return
            if self._history_is_long():
                return  # the next execution goes on from this page
            reserved = min(self._enrich_left, run.page_size * run.pages_per_activity)
            self._enrich_left -= reserved
            request = PageRequest(
                run_id=run.run_id,
                company_id=run.company_id,
                module=name,
                page=progress.pages,
                cursor=progress.cursor,
                page_size=run.page_size,
                start_date=run.start_date,
                end_date=run.end_date,
                updated_since=updated_since,
                enrich=reserved,
                max_pages=max(1, run.pages_per_activity),
            )
            enriched_before = progress.enriched
            try:
                fetching: workflow.ActivityHandle[ModuleProgress] = workflow.start_activity(
                    SYNC_FETCH_PAGES,
                    request,
                    result_type=ModuleProgress,
                    task_queue=run.task_queue,
                    # Heartbeats after every page find a killed worker; pages may wait long
                    # for their turn at a strict rate limit, hence the generous total.
                    start_to_close_timeout=timedelta(seconds=120 + 60 * request.max_pages),
                    heartbeat_timeout=timedelta(seconds=10),
                    retry_policy=page_retry(run.max_retries),
                    summary=f"{name} from page {progress.pages + 1}",
                    # A cancel waits for the activity's answer: the pages it committed.
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )
                self._fetching[name] = fetching
                progress = await fetching
            except ActivityError as err:
                self._enrich_left += reserved
                cause = err.cause
                if isinstance(cause, CancelledError) and self._cancel_reason is not None:
                    continue  # canceled before it committed anything: ends canceled above
                if isinstance(cause, ApplicationError) and cause.type == ERR_PROVIDER_RATE_LIMITED:
                    wait = cause.details[0] if cause.details else DEFAULT_RETRY_AFTER
                    await workflow.sleep(timedelta(seconds=max(0.1, float(wait))))
                    continue
                failed = replace(progress, status=ModuleStatus.FAILED, error=describe_failure(err))
                await self._module_ends(name, failed, "error", f"module failed: {failed.error}")
                return
            finally:
                self._fetching.pop(name, None)
            self._enrich_left += reserved - (progress.enriched - enriched_before)
            self._modules[name] = progress
        done = replace(progress, status=ModuleStatus.DONE)
        await self._module_ends(
            name,
            done,
            "info",
            f"module done: {done.processed} stored, {done.skipped} unchanged, {done.errors} errors",
            cursor_since=cursor_since,
        )

    async def _module_ends(
        self,
        name: str,
        progress: ModuleProgress,
        level: str,
        message: str,
        cursor_since: str | None = None,
    ) -> None:
        self._modules[name] = progress
        await self._record(
            RunRecord(
                run_id=self._run.run_id, module=name, module_progress=progress,
                cursor_since=cursor_since, log_level=level, log_message=message,
                log_metadata={"processed": progress.processed, "skipped": progress.skipped,
                              "errors": progress.errors, "pages": progress.pages},
            )
        )  # fmt: skip

    async def _record(self, record: RunRecord) -> None:
        await workflow.execute_local_activity(
            SYNC_RECORD,
            record,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
        )

    def _publish(self) -> None:
        if self._run.search_attributes:
            workflow.upsert_search_attributes(
                [SA_STATUS.value_set(self._status.value)]
                + ([SA_MODULE.value_set(self._current)] if self._current else [])
            )
        done = sum(p.status == ModuleStatus.DONE for p in self._modules.values())
        workflow.set_current_details(
            f"**{self._status.value}** · company `{self._run.company_id}` · "
            f"{done}/{len(self._modules)} modules done"
            + (f" · now: {self._current}" if self._current else "")
        )
