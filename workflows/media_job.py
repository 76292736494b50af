"""MediaJobWorkflow: one workflow per generation, edit, upscale, video or training job.

submit → wait for the provider (a webhook signal wakes it at once; a durable timer is the poll
fallback) → copy the outputs to storage → done. Deterministic: every side effect is an
activity, the clock is `workflow.now()`.

Ordering rules that are easy to break:
- Provider snapshots only move forward (`PHASE_RANK`): duplicate, late and out-of-order
  webhooks or polls change nothing once a later phase was seen.
- The job is `succeeded` only when `media.store_outputs` returned: that activity writes the
  record after the last object is stored.
- A cancel that arrives while the submit call is in flight waits for it, so the provider job it
  created is cancelled too rather than left running.
- media.submit only creates (or finds again) the provider job and returns its snapshot; the
  workflow records SUBMITTED with its own retried step, so a failed write retries the write,
  never the create.
- Provider events count only once the workflow knows its own provider job id: one that arrives
  earlier (during the submit, or its 429 backoff) is held and applied after the submit, and
  only if it is about the job the submit created. A validly signed event proves who sent it,
  not which job it is for.
- A submit left unconfirmed (an earlier attempt may have created a job at a provider that
  can't be asked which jobs exist: fal, KIE) creates nothing: the first event the job's own
  webhook URL brings names the provider job, which is then followed like a submitted one.
- Queue controls (`MediaJobInput.admission`, behind ADMISSION_PATCH): the job asks its
  provider's AdmissionWorkflow for a slot and stays `queued` until granted; it gives the slot
  back as soon as it leaves the provider (before the output copy), and in `_finish` on every
  other way out, so no path keeps a slot. A cancel (or the deadline) while queued withdraws.
- A deadline (`deadline_seconds`) is a durable timer that cancels the job like a user would,
  with reason DEADLINE_REASON, unless the provider already finished (the copy is not cut).
- With a provider poller (`PollPolicy.bulk_poller`, workflows.provider_poller) the poll
  fallback is mostly its work: it refreshes the provider's quiet jobs in bulk and signals
  `provider_event` to the ones that moved. The job's own timer then waits `max_seconds` from
  the start, the last resort if the poller is stopped or behind.
"""

from __future__ import annotations

import asyncio
import builtins
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

# Contracts and pure helpers only: activities are called by name (see core.contracts).
with workflow.unsafe.imports_passed_through():
    from core.contracts import (
        ADMISSION_GRANTED_SIGNAL,
        ADMISSION_RELEASE,
        ADMISSION_REQUEST,
        CANCEL_SIGNAL,
        DEADLINE_REASON,
        ERR_PROVIDER_REJECTED,
        ERR_SUBMIT_UNCONFIRMED,
        EVENT_FROM_POLLER,
        MEDIA_CANCEL,
        MEDIA_JOB_WORKFLOW,
        MEDIA_POLL,
        MEDIA_RECORD,
        MEDIA_STORE_OUTPUTS,
        MEDIA_SUBMIT,
        PHASE_RANK,
        PROVIDER_EVENT_SIGNAL,
        SA_STATUS,
        TERMINAL_PHASES,
        UNCONFIRMED_SUBMIT_WAIT_SECONDS,
        AdmissionRelease,
        AdmissionRequest,
        JobProgress,
        JobState,
        JobStatus,
        MediaJobInput,
        MediaJobResult,
        PollPolicy,
        ProviderEvent,
        ProviderPhase,
        ProviderRef,
        ProviderSnapshot,
        StoredOutput,
        StoreRequest,
        StoreResult,
        SubmitRequest,
    )
    from workflows.policies import (
        CANCEL_RETRY,
        POLL_RETRY,
        PROVIDER_RETRY,
        RECORD_RETRY,
        STORE_RETRY,
        describe_failure,
        error_type,
    )

STORE_HEARTBEAT_TIMEOUT = timedelta(seconds=90)
SA_STATUS_MOVES = frozenset(
    {JobStatus.PROCESSING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED}
)
# Polls the provider refuses in a row (it no longer knows the job) before the job fails.
MAX_POLL_REJECTIONS = 3
# Events held until the provider job id is known; past this they are dropped (the poll finds
# the state anyway), so a flood of early events can't grow the workflow's state.
MAX_HELD_EVENTS = 16
# Histories recorded before early events were held applied them at once.
HOLD_EARLY_EVENTS_PATCH = "hold-early-provider-events"
# Histories recorded before this had media.submit write SUBMITTED itself, after the create:
# a failed write then retried the create, making a second provider job.
RECORD_SUBMIT_PATCH = "record-submit-in-workflow"
# Histories recorded before this failed a job whose submit was unconfirmed (SubmitUnconfirmed).
WAIT_UNCONFIRMED_PATCH = "wait-for-unconfirmed-submit"
# Histories recorded before this ran the output copy on the workflow's own task queue.
STORE_QUEUE_PATCH = "store-on-storage-queue"
# Histories recorded before this polled every interval from the job's own timer.
STRETCH_POLL_PATCH = "stretch-poll-timers"
# Histories recorded before this had no admission (per-provider queue) and no deadline.
ADMISSION_PATCH = "admission"
# Every patch above at once: a job started since then records this one marker in its first
# workflow task instead of one per patch, each of which also upserts TemporalChangeVersion (a
# visibility write: five per job, most of them while the job is queued). Older histories lack
# it and ask each patch as before. A new patch goes below this line and is asked on its own
# until the next baseline takes it in (a new id, asked first, the old baseline beside it).
PATCHES_BASELINE = "patches-baseline-2026-12"


def poll_delay(policy: PollPolicy, elapsed_seconds: float) -> timedelta:
    """Poll every `interval` at first, then let the gap grow with the job's age up to the max."""
    late = max(0.0, elapsed_seconds - policy.backoff_after_seconds)
    delay = policy.interval_seconds + late * (policy.backoff - 1.0)
    return timedelta(seconds=min(policy.max_seconds, max(policy.interval_seconds, delay)))


@workflow.defn(name=MEDIA_JOB_WORKFLOW)
class MediaJobWorkflow:
    @workflow.init
    def __init__(self, job: MediaJobInput) -> None:
        self._job = job
        self._status = JobStatus.QUEUED
        self._recorded_status = JobStatus.QUEUED
        self._snapshot: ProviderSnapshot | None = None
        self._cancel_reason: str | None = None
        self._webhooks = 0
        self._polls = 0
        self._last_error: str | None = None
        self._outputs: list[StoredOutput] = []
        self._timings: dict[str, str] = {}
        self._poll_rejections = 0
        self._held: list[ProviderSnapshot] = []
        self._store_queue: str | None = None
        self._stretch_polls = False
        self._granted = False
        self._holds_slot = False  # asked the admission workflow and not released yet
        self._deadline: asyncio.Task[None] | None = None
        self._provider_queue: str | None = None
        self._baseline: bool | None = None

    def _patched(self, patch_id: str) -> bool:
        """`workflow.patched(patch_id)`, true without a marker of its own for a job started
        since PATCHES_BASELINE."""
        return self._started_since_baseline() or workflow.patched(patch_id)

    def _started_since_baseline(self) -> bool:
        # Asked first in the job's first activation (`run`, or a signal handled before it), so
        # a replay answers it from the same workflow task the marker was recorded in.
        if self._baseline is None:
            self._baseline = workflow.patched(PATCHES_BASELINE)
        return self._baseline

    # --- messages ---------------------------------------------------------------------------

    @workflow.signal(name=PROVIDER_EVENT_SIGNAL)
    def provider_event(self, event: ProviderEvent) -> None:
        if event.source == EVENT_FROM_POLLER:
            self._polls += 1
        else:
            self._webhooks += 1
        if self._snapshot is None and self._patched(HOLD_EARLY_EVENTS_PATCH):
            self._hold(event.snapshot)
            return
        self._apply(event.snapshot)

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self, reason: str = "canceled by user") -> None:
        if self._status not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED):
            self._cancel_reason = self._cancel_reason or reason or "canceled by user"

    @workflow.signal(name=ADMISSION_GRANTED_SIGNAL)
    def admission_granted(self) -> None:
        self._granted = True

    @workflow.query
    def state(self) -> JobState:
        snapshot = self._snapshot
        return JobState(
            job_id=self._job.job_id,
            status=self._status,
            provider_status=snapshot.provider_status if snapshot else None,
            provider_job_id=snapshot.provider_job_id if snapshot else None,
            outputs=list(self._outputs),
            output_data=dict(snapshot.output_data) if snapshot else {},
            webhook_count=self._webhooks,
            poll_count=self._polls,
            last_error=self._last_error,
            cancel_requested=self._cancel_reason is not None,
            timings=dict(self._timings),
        )

    # --- the job ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, job: MediaJobInput) -> MediaJobResult:
        self._mark(JobStatus.QUEUED)
        self._started_since_baseline()
        # Asked first, in the first workflow task, for the reason given at `record_submit`.
        if self._patched(STORE_QUEUE_PATCH) and job.storage_task_queue:
            self._store_queue = job.storage_task_queue
        # Asked in the first workflow task too; only for jobs a provider poller covers.
        if job.poll.bulk_poller and self._patched(STRETCH_POLL_PATCH):
            self._stretch_polls = True
        controls = (job.admission is not None or bool(job.deadline_seconds)) and self._patched(
            ADMISSION_PATCH
        )
        if controls and job.admission is not None and job.provider_task_queue:
            self._provider_queue = job.provider_task_queue
        if controls and job.deadline_seconds:
            self._deadline = asyncio.ensure_future(self._deadline_timer(job.deadline_seconds))
        if self._cancel_reason is not None:
            return await self._finish(JobStatus.CANCELED, self._cancel_reason)

        if job.adopt_provider_job_id:
            return await self._adopt(job.adopt_provider_job_id)
        if controls and job.admission is not None and not await self._admit():
            assert self._cancel_reason is not None
            return await self._finish(JobStatus.CANCELED, self._cancel_reason)
        # Decided before the submit, not after: on replay a local activity may resolve in an
        # earlier workflow task than it first did, and a patch asked after it would be missed.
        record_submit = self._patched(RECORD_SUBMIT_PATCH)
        wait_unconfirmed = self._patched(WAIT_UNCONFIRMED_PATCH)
        request = SubmitRequest(
            job_id=job.job_id,
            kind=job.kind,
            provider=job.provider,
            model=job.model,
            input=job.input,
            webhook_url=job.webhook_url,
            webhook_events=job.webhook_events,
            cancel_after_seconds=self._seconds_left() if controls else None,
        )
        try:
            submitted: ProviderSnapshot
            if self._provider_queue is not None:
                # The provider's own task queue: its rate limit holds for every worker.
                submitted = await workflow.execute_activity(
                    MEDIA_SUBMIT,
                    request,
                    result_type=ProviderSnapshot,
                    task_queue=self._provider_queue,
                    start_to_close_timeout=timedelta(seconds=60),
                    schedule_to_close_timeout=timedelta(hours=1),
                    retry_policy=PROVIDER_RETRY,
                    summary=f"submit to {job.provider}",
                )
            else:
                # A local activity: the submit and the first timer share one workflow task.
                submitted = await workflow.execute_local_activity(
                    MEDIA_SUBMIT,
                    request,
                    result_type=ProviderSnapshot,
                    start_to_close_timeout=timedelta(seconds=60),
                    schedule_to_close_timeout=timedelta(hours=1),
                    retry_policy=PROVIDER_RETRY,
                    # Longer waits (a 429's retry_after, a provider outage) become durable
                    # timers instead of holding the workflow task open.
                    local_retry_threshold=timedelta(seconds=2),
                    summary=f"submit to {job.provider}",
                )
        except (ActivityError, ApplicationError) as err:
            if wait_unconfirmed and error_type(err) == ERR_SUBMIT_UNCONFIRMED:
                return await self._await_unconfirmed(describe_failure(err))
            return await self._finish(JobStatus.FAILED, describe_failure(err))
        return await self._submitted(submitted, record_submit)

    async def _admit(self) -> bool:
        """Wait `queued` for the provider's admission workflow to grant a slot; False when the
        job was cancelled (or reached its deadline) first: it then left the line."""
        job = self._job
        assert job.admission is not None
        self._holds_slot = True  # from the request on, a release undoes it
        await workflow.execute_local_activity(
            ADMISSION_REQUEST,
            AdmissionRequest(
                job_id=job.job_id,
                user_id=job.user_id,
                provider=job.provider,
                priority=job.priority,
                limits=job.admission,
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
        )
        await workflow.wait_condition(lambda: self._granted or self._cancel_reason is not None)
        if self._cancel_reason is not None:
            await self._release()
            return False
        return True

    async def _release(self) -> None:
        """Give the provider slot (or the place in line) back; once."""
        if not self._holds_slot:
            return
        self._holds_slot = False
        await workflow.execute_local_activity(
            ADMISSION_RELEASE,
            AdmissionRelease(job_id=self._job.job_id, provider=self._job.provider),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
        )

    async def _deadline_timer(self, seconds: float) -> None:
        await workflow.sleep(timedelta(seconds=seconds), summary="deadline")
        # Once the provider finished, the outputs are copied: the deadline is for the provider.
        if self._status in (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.PROCESSING):
            self._cancel_reason = self._cancel_reason or DEADLINE_REASON

    def _until_deadline(self) -> float | None:
        """Seconds from now to the job's deadline (negative once past); None without one."""
        seconds = self._job.deadline_seconds
        if not seconds:
            return None
        return seconds - (workflow.now() - workflow.info().start_time).total_seconds()

    def _deadline_reached(self) -> bool:
        left = self._until_deadline()
        # Cancel-After is told in whole seconds, rounded up: the provider never ends it early.
        return left is not None and left <= 1.0

    def _seconds_left(self) -> float | None:
        left = self._until_deadline()
        return None if left is None else max(1.0, left)

    async def _submitted(self, submitted: ProviderSnapshot, record_submit: bool) -> MediaJobResult:
        """Follow the provider job the submit created (or found) to the end."""
        self._status = JobStatus.SUBMITTED
        self._mark(JobStatus.SUBMITTED)
        self._apply(submitted)
        if record_submit:
            # Its own retried step: a database outage is waited out here, and the provider
            # job is never created again because this write failed.
            await self._record(JobStatus.SUBMITTED)
        else:
            self._recorded_status = JobStatus.SUBMITTED  # media.submit wrote it
        self._apply_held()
        self._follow_provider()  # a webhook may have said `processing` during the submit
        self._publish_status()

        return await self._follow_to_the_end()

    async def _await_unconfirmed(self, why: str) -> MediaJobResult:
        """Wait for the webhook of the provider job an interrupted submit may have created.

        fal and KIE can't be asked which jobs exist and call back only when a job ends: the
        first event about this job (its webhook URL carries the job's token, so it is about
        no other job) names the provider job, which is then followed like a submitted one.
        Nothing is created meanwhile; a cancel ends the wait; past the kind's deadline the
        job fails instead of paying for a second provider job.
        """
        job = self._job
        self._last_error = why
        self._publish_status()
        wait = timedelta(seconds=UNCONFIRMED_SUBMIT_WAIT_SECONDS[job.kind])
        try:
            await workflow.wait_condition(
                lambda: bool(self._held) or self._cancel_reason is not None,
                timeout=wait,
                timeout_summary="wait for the provider's webhook after an unconfirmed submit",
            )
        except builtins.TimeoutError:
            return await self._finish(
                JobStatus.FAILED,
                f"{job.provider} never called back about the job an interrupted submit may "
                f"have created (waited {wait}); not submitted again so it is not paid twice",
            )
        if not self._held:
            return await self._finish(JobStatus.CANCELED, self._cancel_reason)
        self._last_error = None
        found = self._held.pop(0)
        workflow.logger.warning(
            "job %s: adopting %s job %s, named by its webhook after an unconfirmed submit",
            job.job_id,
            job.provider,
            found.provider_job_id,
        )
        return await self._submitted(found, record_submit=True)

    async def _adopt(self, provider_job_id: str) -> MediaJobResult:
        """Follow a job started outside this workflow (or before a crash) from a first poll."""
        self._snapshot = ProviderSnapshot(
            provider_job_id=provider_job_id, provider_status="adopted", phase=ProviderPhase.QUEUED
        )
        self._status = JobStatus.SUBMITTED
        self._mark(JobStatus.SUBMITTED)
        await self._record(JobStatus.SUBMITTED)
        self._apply_held()
        await self._poll()
        self._publish_status()
        return await self._follow_to_the_end()

    async def _follow_to_the_end(self) -> MediaJobResult:
        job = self._job
        await self._wait_for_provider()
        canceled_here = False
        if self._holds_slot:  # the admission path (older histories never hold one)
            if self._cancel_reason is not None and self._poll_rejections < MAX_POLL_REJECTIONS:
                await self._cancel_at_provider()
                canceled_here = True
            await self._release()  # the job has left the provider: the next one may go

        if self._poll_rejections >= MAX_POLL_REJECTIONS:
            return await self._finish(
                JobStatus.FAILED, f"{job.provider} no longer knows this job: {self._last_error}"
            )
        if self._cancel_reason is not None:
            if not canceled_here:
                await self._cancel_at_provider()
            return await self._finish(JobStatus.CANCELED, self._cancel_reason)

        snapshot = self._snapshot
        assert snapshot is not None
        if snapshot.phase == ProviderPhase.FAILED:
            return await self._finish(
                JobStatus.FAILED, snapshot.error or f"{job.provider} reported the job failed"
            )
        if snapshot.phase == ProviderPhase.CANCELED:
            # Replicate ends a job at its Cancel-After (our deadline) on its own, and may say so
            # before our timer fires: the reason is still the deadline.
            reason = DEADLINE_REASON if self._deadline_reached() else f"canceled at {job.provider}"
            return await self._finish(JobStatus.CANCELED, reason)
        return await self._store(snapshot)

    async def _wait_for_provider(self) -> None:
        started = workflow.now()
        while (
            not self._provider_done()
            and self._cancel_reason is None
            and self._poll_rejections < MAX_POLL_REJECTIONS
        ):
            elapsed = (workflow.now() - started).total_seconds()
            delay = poll_delay(self._job.poll, elapsed)
            if self._stretch_polls:
                delay = max(delay, timedelta(seconds=self._job.poll.max_seconds))
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._provider_done()
                        or self._cancel_reason is not None
                        or self._status != self._recorded_status
                    ),
                    timeout=delay,
                    timeout_summary="poll fallback",
                )
            except builtins.TimeoutError:
                await self._poll()
            if not self._provider_done() and self._status != self._recorded_status:
                await self._record(self._status)

    async def _poll(self) -> None:
        self._polls += 1
        try:
            snapshot: ProviderSnapshot = await workflow.execute_local_activity(
                MEDIA_POLL,
                self._ref(),
                result_type=ProviderSnapshot,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=POLL_RETRY,
            )
        except (ActivityError, ApplicationError) as err:
            # A local activity's failure may surface unwrapped, as the ApplicationError itself.
            self._last_error = f"poll failed: {describe_failure(err)}"
            cause = err.cause if isinstance(err, ActivityError) else err
            if isinstance(cause, ApplicationError) and cause.type == ERR_PROVIDER_REJECTED:
                self._poll_rejections += 1
            return
        self._poll_rejections = 0
        self._apply(snapshot)

    async def _store(self, snapshot: ProviderSnapshot) -> MediaJobResult:
        self._status = JobStatus.STORING
        self._recorded_status = JobStatus.STORING  # media.store_outputs writes it first
        self._mark(JobStatus.STORING)
        self._publish_status()
        store: asyncio.Future[StoreResult] = asyncio.ensure_future(
            workflow.execute_activity(
                MEDIA_STORE_OUTPUTS,
                StoreRequest(
                    job_id=self._job.job_id,
                    user_id=self._job.user_id,
                    kind=self._job.kind,
                    snapshot=snapshot,
                    webhook_count=self._webhooks,
                    poll_count=self._polls,
                    provider=self._job.provider,
                ),
                result_type=StoreResult,
                task_queue=self._store_queue,
                start_to_close_timeout=timedelta(minutes=30),
                schedule_to_close_timeout=timedelta(hours=6),
                # Above the database's busy timeout (60 s on SQLite), though the copy heartbeats
                # while its success commit waits: only a dead or stalled worker misses 90 s of
                # heartbeats, and its copy is retried that much later. Cancels still land in
                # seconds (the worker's heartbeat throttle).
                heartbeat_timeout=STORE_HEARTBEAT_TIMEOUT,
                retry_policy=STORE_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"store {len(snapshot.output_urls)} output(s)",
            )
        )
        await workflow.wait_condition(lambda: store.done() or self._cancel_reason is not None)
        if not store.done():
            store.cancel()
        try:
            result = await store
        except asyncio.CancelledError:
            return await self._finish(JobStatus.CANCELED, self._cancel_reason)
        except ActivityError as err:
            if self._cancel_reason is not None:
                return await self._finish(JobStatus.CANCELED, self._cancel_reason)
            return await self._finish(JobStatus.FAILED, describe_failure(err))
        self._outputs = result.outputs
        self._status = JobStatus.SUCCEEDED
        self._recorded_status = JobStatus.SUCCEEDED  # media.store_outputs wrote it
        self._mark(JobStatus.SUCCEEDED)
        self._publish_status()
        output_data = snapshot.output_data if result.output_data is None else result.output_data
        return MediaJobResult(
            status=JobStatus.SUCCEEDED, outputs=result.outputs, output_data=output_data
        )

    async def _cancel_at_provider(self) -> None:
        snapshot = self._snapshot
        if snapshot is None or snapshot.phase in TERMINAL_PHASES:
            return
        try:
            canceled: ProviderSnapshot = await workflow.execute_activity(
                MEDIA_CANCEL,
                self._ref(),
                result_type=ProviderSnapshot,
                task_queue=self._provider_queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=CANCEL_RETRY,
                summary=f"cancel at {self._job.provider}",
            )
        except ActivityError as err:
            self._last_error = f"cancel at provider failed: {describe_failure(err)}"
            return
        self._apply(canceled)

    async def _finish(self, status: JobStatus, error: str | None) -> MediaJobResult:
        await self._release()
        if self._deadline is not None and not self._deadline.done():
            self._deadline.cancel()
        self._status = status
        self._last_error = error
        self._mark(status)
        await self._record(status, error=error)
        self._publish_status()
        output_data = self._snapshot.output_data if self._snapshot else {}
        return MediaJobResult(status=status, error=error, output_data=output_data)

    # --- helpers ----------------------------------------------------------------------------

    def _apply(self, snapshot: ProviderSnapshot) -> None:
        """Take a provider snapshot only if it moves the job forward."""
        current = self._snapshot
        if current is not None:
            if current.provider_job_id != snapshot.provider_job_id:
                return
            if current.phase in TERMINAL_PHASES:
                return
            if PHASE_RANK[snapshot.phase] < PHASE_RANK[current.phase]:
                return
        self._snapshot = snapshot
        self._follow_provider()

    def _hold(self, snapshot: ProviderSnapshot) -> None:
        """Keep an event that came before the provider job id was known (bounded)."""
        adopted = self._job.adopt_provider_job_id
        if adopted and snapshot.provider_job_id != adopted:
            return  # an adopted job knows its provider job id from the start
        if len(self._held) < MAX_HELD_EVENTS:
            self._held.append(snapshot)

    def _apply_held(self) -> None:
        """Apply the held events now that the snapshot names our provider job (others drop)."""
        held, self._held = self._held, []
        for snapshot in held:
            self._apply(snapshot)

    def _follow_provider(self) -> None:
        """A submitted job whose provider job runs is processing (webhooks may come early)."""
        snapshot = self._snapshot
        if (
            snapshot is not None
            and snapshot.phase == ProviderPhase.RUNNING
            and self._status == JobStatus.SUBMITTED
        ):
            self._status = JobStatus.PROCESSING
            self._mark(JobStatus.PROCESSING)
            self._publish_status()

    def _provider_done(self) -> bool:
        return self._snapshot is not None and self._snapshot.phase in TERMINAL_PHASES

    def _ref(self) -> ProviderRef:
        assert self._snapshot is not None
        return ProviderRef(
            job_id=self._job.job_id,
            kind=self._job.kind,
            provider=self._job.provider,
            provider_job_id=self._snapshot.provider_job_id,
            model=self._job.model,
        )

    async def _record(self, status: JobStatus, error: str | None = None) -> None:
        snapshot = self._snapshot
        await workflow.execute_local_activity(
            MEDIA_RECORD,
            JobProgress(
                job_id=self._job.job_id,
                status=status,
                provider_status=snapshot.provider_status if snapshot else None,
                provider_phase=snapshot.phase if snapshot else None,
                provider_job_id=snapshot.provider_job_id if snapshot else None,
                error=error,
                webhook_count=self._webhooks,
                poll_count=self._polls,
                output_data=snapshot.output_data if snapshot else {},
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
        )
        self._recorded_status = status

    def _mark(self, status: JobStatus) -> None:
        self._timings.setdefault(status.value, workflow.now().isoformat())

    def _publish_status(self) -> None:
        """Keep the web UI's search attributes and details in step with the job.

        The status search attribute moves only when the job starts processing and when it
        ends: each upsert is a visibility write on the server, its most expensive step.
        """
        if self._job.search_attributes and self._status in SA_STATUS_MOVES:
            workflow.upsert_search_attributes([SA_STATUS.value_set(self._status.value)])
        snapshot = self._snapshot
        details: list[str] = [
            f"**{self._status.value}** · {self._job.kind.value} · `{self._job.model}`",
            f"provider {self._job.provider}: {snapshot.provider_status if snapshot else '-'}"
            f" (job {snapshot.provider_job_id if snapshot else '-'})",
            f"webhooks {self._webhooks} · polls {self._polls}",
        ]
        if self._last_error:
            details.append(f"error: {self._last_error}")
        workflow.set_current_details("  \n".join(details))
