"""The recovery sweep (see `core.recovery`): find jobs whose outputs may be lost, and act.

One activity does a whole sweep: it is short (database reads, a provider poll and a URL probe
per suspect job) and acting is starting or signalling workflows, which do the real work.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import CursorResult, and_, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus

from core.contracts import (
    PROVIDER_EVENT_SIGNAL,
    TERMINAL_JOB_STATUSES,
    TERMINAL_PHASES,
    JobKind,
    JobStatus,
    ProviderEvent,
    ProviderPhase,
    ProviderRef,
    ProviderSnapshot,
    media_job_workflow_id,
)
from core.events import append_event, job_payload, user_topic
from core.jobs.start import InputRefused, signed_input, start_adopting, start_new
from core.jobs.store import RESTORING, advance_job
from core.models import Job, RecoveryAttempt, utcnow
from core.outbound import OutboundFetcher, OutboundRefused
from core.recovery import RECOVERY_SWEEP, RecoveryItem, RecoveryReport
from core.settings import Settings
from core.starts import StartOutcome, StartResult, workflow_status
from providers import registry
from providers.base import Provider, ProviderError
from storage.base import Storage

NOT_FINISHED = [s.value for s in JobStatus if s not in TERMINAL_JOB_STATUSES]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suspect:
    job: Job
    problem: str
    # the job's workflow when it was looked at (unfinished jobs): None, it never had one
    workflow: WorkflowExecutionStatus | None = None


def provider_said(phase: ProviderPhase) -> ColumnElement[bool]:
    """Jobs whose provider last said `phase`: by the recorded phase, or for rows recorded
    before it, by what their provider's spec says their raw status means."""
    unphased = [
        and_(Job.provider == name, Job.provider_status.in_(statuses))
        for name, statuses in registry.statuses_of(phase).items()
        if statuses
    ]
    return or_(
        Job.provider_phase == phase.value,
        and_(Job.provider_phase.is_(None), or_(false(), *unphased)),
    )


def rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


class RecoverySweeper:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        providers: dict[str, Provider],
        temporal: Client,
        fetcher: OutboundFetcher,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._providers = providers
        self._temporal = temporal
        self._fetcher = fetcher
        self._settings = settings

    # --- finding -----------------------------------------------------------------------------

    async def _suspects(self) -> tuple[int, list[Suspect]]:
        """(jobs looked at, suspects) within the look-back window."""
        settings = self._settings
        now = utcnow()
        since = now - timedelta(hours=settings.recovery_lookback_hours)
        settled = now - timedelta(minutes=settings.recovery_min_age_minutes)
        limit = settings.recovery_batch
        async with self._sessions() as session:
            unfinished = (
                await session.scalars(
                    select(Job)
                    .where(
                        Job.status.in_(NOT_FINISHED),
                        Job.created_at >= since,
                        Job.updated_at <= settled,
                    )
                    .order_by(Job.created_at.desc())
                    .limit(limit)
                )
            ).all()
            store_failed = (
                await session.scalars(
                    select(Job)
                    .where(
                        Job.status == JobStatus.FAILED.value,
                        Job.created_at >= since,
                        provider_said(ProviderPhase.SUCCEEDED),
                        # a restore that ended without success is looked at again
                        or_(Job.recovery_state.is_(None), Job.recovery_state == RESTORING),
                    )
                    .order_by(Job.created_at.desc())
                    .limit(limit)
                )
            ).all()
            succeeded = (
                await session.scalars(
                    select(Job)
                    .where(
                        Job.status == JobStatus.SUCCEEDED.value,
                        Job.completed_at >= since,
                        or_(
                            Job.recovery_state.is_(None), Job.recovery_state != "needs_regeneration"
                        ),
                    )
                    .order_by(Job.completed_at.desc())
                    .limit(limit)
                )
            ).all()
        found: list[Suspect] = []
        for job in unfinished:
            workflow = await self._workflow(job.id)
            running = workflow == WorkflowExecutionStatus.RUNNING
            found.append(Suspect(job, "unfinished" if running else "stranded", workflow))
        for job in store_failed:
            if not await self._restore_running(job):
                found.append(Suspect(job, "store_failed"))
        for job in succeeded:
            keys = [str(o.get("key")) for o in job.outputs or [] if o.get("key")]
            present = await asyncio.gather(*(self._storage.exists(k) for k in keys))
            if not all(present) and not await self._restore_running(job):
                found.append(Suspect(job, "objects_missing"))
        return len(unfinished) + len(store_failed) + len(succeeded), found

    async def _workflow(self, job_id: str) -> WorkflowExecutionStatus | None:
        """The status of the job's workflow; None when it never had one."""
        return await workflow_status(self._temporal, media_job_workflow_id(job_id))

    async def _restore_running(self, job: Job) -> bool:
        """Whether a restore another sweep claimed is still at work (then it is left alone)."""
        if job.recovery_state != RESTORING:
            return False
        return await self._workflow(job.id) == WorkflowExecutionStatus.RUNNING

    # --- deciding ----------------------------------------------------------------------------

    async def _snapshot(self, job: Job) -> ProviderSnapshot | None:
        provider = self._providers.get(job.provider)
        if provider is None or not job.provider_job_id:
            return None
        ref = ProviderRef(
            job_id=job.id, kind=JobKind(job.kind), provider=job.provider,
            provider_job_id=job.provider_job_id, model=job.model,
        )  # fmt: skip
        return await provider.get(ref)

    async def _alive(self, url: str, provider: str, refused: list[str]) -> bool:
        """Whether an output URL still serves its file (one byte asked for).

        The URL is the provider's, so it goes through the outbound fetcher like a copy would;
        why it was refused is added to `refused`.
        """
        try:
            async with self._fetcher.open(
                url, headers={"Range": "bytes=0-0"}, provider=provider
            ) as fetched:
                return fetched.response.status_code in (200, 206)
        except OutboundRefused as exc:
            refused.append(str(exc))
            return False
        except httpx.HTTPError:
            return False

    async def _plan(self, suspect: Suspect) -> tuple[RecoveryItem, ProviderSnapshot | None]:
        """What to do about the job, and the provider's snapshot it was decided on."""
        job, problem = suspect.job, suspect.problem
        item = RecoveryItem(
            job_id=job.id, user_id=job.user_id, kind=job.kind, provider=job.provider,
            provider_job_id=job.provider_job_id, status=job.status, problem=problem,
        )  # fmt: skip
        if problem == "stranded":
            if job.provider_job_id:
                item.action, item.detail = "adopt", "its workflow is gone: follow the provider job"
            elif suspect.workflow is None and job.status == JobStatus.QUEUED.value:
                item.action = "start"
                item.detail = "its workflow was never started (the orchestrator was unreachable)"
            else:
                ended = suspect.workflow.name.lower() if suspect.workflow else "gone"
                item.action = "fail"
                item.detail = f"its workflow ended ({ended}) before the job reached a provider"
            return item, None
        if problem == "unfinished" and not job.provider_job_id:
            return item, None  # its workflow is submitting it
        try:
            snapshot = await self._snapshot(job)
        except ProviderError as exc:
            item.detail = f"provider unreachable: {exc}"
            return item, None
        if snapshot is None:
            item.detail = f"provider {job.provider!r} is not configured"
            return item, None
        if problem == "unfinished":
            if snapshot.phase in TERMINAL_PHASES:
                item.action = "nudge"
                item.detail = f"{job.provider} says {snapshot.provider_status}: tell the workflow"
            return item, snapshot
        # store_failed / objects_missing: copy again while the URLs live
        if snapshot.phase != ProviderPhase.SUCCEEDED:
            item.detail = f"{job.provider} says {snapshot.provider_status}"
            return item, snapshot
        refused: list[str] = []
        alive = [
            url for url in snapshot.output_urls if await self._alive(url, job.provider, refused)
        ]
        if snapshot.output_urls and len(alive) == len(snapshot.output_urls):
            item.action = "restore"
            item.detail = f"{len(alive)} output URL(s) still serve their files"
        else:
            item.action = "needs_regeneration"
            expired = len(snapshot.output_urls) - len(alive)
            item.detail = (
                "the provider removed the outputs"
                if snapshot.data_removed or not snapshot.output_urls
                else f"an output URL is refused: {refused[0]}"
                if refused
                else f"{expired} of {len(snapshot.output_urls)} output URL(s) expired"
            )
        return item, snapshot

    # --- acting ------------------------------------------------------------------------------

    async def sweep(self, dry_run: bool) -> RecoveryReport:
        checked, suspects = await self._suspects()
        report = RecoveryReport(dry_run=dry_run, checked=checked)
        for suspect in suspects:
            item, snapshot = await self._plan(suspect)
            if item.action == "none" and suspect.problem == "unfinished":
                continue  # the provider is still working: nothing to report
            if not dry_run and item.action != "none":
                item = await self._act(suspect.job, item, snapshot)
            report.items.append(item)
        return report

    # Sweeps may run at once (two schedules, a manual trigger during a scheduled one) and a
    # sweep activity may be retried: before acting, a sweep claims the job as it read it (see
    # `_claim`), so the second one's claim matches nothing and it takes no action.

    async def _act(
        self, job: Job, item: RecoveryItem, snapshot: ProviderSnapshot | None
    ) -> RecoveryItem:
        attempt_id = await self._claim(job, item)
        if attempt_id is None:
            return replace(item, result="taken", detail=f"{item.detail}; another sweep acts on it")
        try:
            result, note = await self._do(job, item, snapshot)
        except Exception as exc:
            # Whatever it was, the job is left for the next sweep; the reason is kept.
            log.warning("recovery of job %s (%s) failed", job.id, item.action, exc_info=True)
            result, note = "failed", f"{type(exc).__name__}: {exc}"
        item = replace(
            item, result=result, detail=f"{item.detail}; {note}" if note else item.detail
        )
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(RecoveryAttempt)
                .where(RecoveryAttempt.id == attempt_id)
                .values(result=result, detail=item.detail)
            )
            if result == "failed":
                # Release the claim: the next sweep may try again (an unfinished job once it
                # is RECOVERY_MIN_AGE_MINUTES old again).
                await session.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(updated_at=utcnow())
                    .execution_options(synchronize_session=False)
                )
        return item

    async def _claim(self, job: Job, item: RecoveryItem) -> int | None:
        """Claim the job for one action: the id of its `recovery_attempts` row, or None when
        another sweep claimed it first.

        A conditional update of the row as this sweep read it (same `updated_at`) that also
        finds no claim made on that version of the row within a sweep interval: a sweep that
        read the row before another's claim matches nothing (the claim moved `updated_at`),
        and one that read it after finds that claim. A restore's claim also marks the job
        `restoring`, which lets its restored copy record the job succeeded
        (`core.jobs.store.advance_job`).
        """
        now = utcnow()
        recent = now - timedelta(minutes=self._settings.recovery_interval_minutes)
        claimed_before = (
            select(RecoveryAttempt.id)
            .where(
                RecoveryAttempt.job_id == job.id,
                RecoveryAttempt.at >= job.updated_at,
                RecoveryAttempt.at >= recent,
            )
            .exists()
        )
        values: dict[str, Any] = {"updated_at": now}
        if item.action == "restore":
            values.update(recovery_state=RESTORING, recovery_reason=item.problem)
        async with self._sessions() as session, session.begin():
            claimed = await session.execute(
                update(Job)
                .where(Job.id == job.id, Job.updated_at == job.updated_at, ~claimed_before)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if rowcount(claimed) != 1:
                return None
            attempt = RecoveryAttempt(
                job_id=job.id, problem=item.problem, action=item.action, result="claimed",
                detail=item.detail, at=now,
            )  # fmt: skip
            session.add(attempt)
            await session.flush()
            return attempt.id

    async def _do(
        self, job: Job, item: RecoveryItem, snapshot: ProviderSnapshot | None
    ) -> tuple[str, str]:
        """Take the claimed action: (result, a note for the detail)."""
        if item.action == "nudge":
            assert snapshot is not None  # a nudge is planned on a terminal snapshot
            await self._temporal.get_workflow_handle(media_job_workflow_id(job.id)).signal(
                PROVIDER_EVENT_SIGNAL, ProviderEvent(snapshot=snapshot, webhook_id="recovery")
            )
            return "done", ""
        if item.action in ("adopt", "restore"):
            return self._started(await self._adopt(job))
        if item.action == "start":
            return await self._start(job)
        if item.action == "fail":
            await self._fail(job.id, f"recovery: {item.detail}")
            return "job_failed", ""
        await self._mark_needs_regeneration(job.id, item.detail)
        return "needs_regeneration", ""

    @staticmethod
    def _started(started: StartResult) -> tuple[str, str]:
        if started.outcome == StartOutcome.STARTED:
            return "started", ""
        if started.outcome == StartOutcome.EXISTS:
            return "already_running", "its workflow was started by someone else"
        return "failed", f"could not start its workflow ({started.outcome}): {started.error}"

    async def _start(self, job: Job) -> tuple[str, str]:
        """Start a queued job's workflow with the input the API would have started it with;
        fail the job when it can't be started (a refusal, or an input link that went bad)."""
        async with self._sessions() as session:
            try:
                # The owner's input was checked when the job was created: only the links to
                # our outputs are signed again (they are short-lived).
                sent = await signed_input(session, self._settings, job.input, lambda _: True)
            except InputRefused as exc:
                await self._fail(job.id, f"could not be started: {exc.field}: {exc.message}")
                return "job_failed", exc.message
        started = await start_new(self._temporal, self._settings, job, sent)
        if started.outcome == StartOutcome.NOT_STARTED and not started.unavailable:
            await self._fail(job.id, f"could not start the job: {started.error}")
            return "job_failed", f"the orchestrator refused it: {started.error}"
        return self._started(started)

    async def _fail(self, job_id: str, reason: str) -> None:
        async with self._sessions() as session, session.begin():
            await advance_job(session, job_id, JobStatus.FAILED, error=reason)

    async def _adopt(self, job: Job) -> StartResult:
        """A new workflow (the job's closed one's id again) following the provider job."""
        return await start_adopting(self._temporal, self._settings, job)

    async def _mark_needs_regeneration(self, job_id: str, reason: str) -> None:
        async with self._sessions() as session, session.begin():
            job = (
                await session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(
                        recovery_state="needs_regeneration",
                        recovery_reason=reason,
                        updated_at=utcnow(),
                    )
                    .returning(Job)
                    .execution_options(synchronize_session=False)
                )
            ).scalar_one()
            await append_event(
                session, user_topic(job.user_id), f"job.{job.status}", job_payload(job)
            )


class RecoveryActivities:
    def __init__(self, sweeper: RecoverySweeper) -> None:
        self._sweeper = sweeper

    @activity.defn(name=RECOVERY_SWEEP)
    async def sweep(self, dry_run: bool) -> RecoveryReport:
        return await self._sweeper.sweep(dry_run)
