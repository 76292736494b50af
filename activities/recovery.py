"""The recovery sweep (see `core.recovery`): find jobs whose outputs may be lost, and act.

One activity does a whole sweep: it is short (database reads, a provider poll and a URL probe
per suspect job) and acting is starting or signalling workflows, which do the real work.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import httpx
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from core.contracts import (
    TERMINAL_JOB_STATUSES,
    TERMINAL_PHASES,
    JobKind,
    JobStatus,
    MediaJobInput,
    ProviderEvent,
    ProviderPhase,
    ProviderRef,
    ProviderSnapshot,
    media_job_workflow_id,
)
from core.events import append_event, job_payload, user_topic
from core.job_start import poll_policy, start_job_workflow, webhook_url
from core.models import Job, RecoveryAttempt, utcnow
from core.outbound import OutboundFetcher, OutboundRefused
from core.recovery import RecoveryItem, RecoveryReport
from core.settings import Settings
from providers.base import Provider, ProviderError
from storage.base import Storage

NOT_FINISHED = [s.value for s in JobStatus if s not in TERMINAL_JOB_STATUSES]


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

    async def _suspects(self) -> tuple[int, list[tuple[Job, str]]]:
        """(jobs looked at, [(job, problem)]) within the look-back window."""
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
                        Job.provider_status.in_(("succeeded", "COMPLETED", "success", "OK")),
                        Job.recovery_state.is_(None),
                        Job.kind != JobKind.TRAINING.value,
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
                        Job.kind != JobKind.TRAINING.value,
                        or_(
                            Job.recovery_state.is_(None), Job.recovery_state != "needs_regeneration"
                        ),
                    )
                    .order_by(Job.completed_at.desc())
                    .limit(limit)
                )
            ).all()
        found: list[tuple[Job, str]] = []
        for job in unfinished:
            running = await self._workflow_running(job.id)
            found.append((job, "unfinished" if running else "stranded"))
        found += [(job, "store_failed") for job in store_failed]
        for job in succeeded:
            keys = [str(o.get("key")) for o in job.outputs or [] if o.get("key")]
            present = await asyncio.gather(*(self._storage.exists(k) for k in keys))
            if not all(present):
                found.append((job, "objects_missing"))
        return len(unfinished) + len(store_failed) + len(succeeded), found

    async def _workflow_running(self, job_id: str) -> bool:
        try:
            described = await self._temporal.get_workflow_handle(
                media_job_workflow_id(job_id)
            ).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status == WorkflowExecutionStatus.RUNNING

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

    async def _plan(self, job: Job, problem: str) -> tuple[RecoveryItem, ProviderSnapshot | None]:
        """What to do about the job, and the provider's snapshot it was decided on."""
        item = RecoveryItem(
            job_id=job.id, user_id=job.user_id, kind=job.kind, provider=job.provider,
            provider_job_id=job.provider_job_id, status=job.status, problem=problem,
        )  # fmt: skip
        if problem == "stranded":
            if not job.provider_job_id:
                item.action, item.detail = "none", "never reached the provider: nothing to follow"
            else:
                item.action, item.detail = "adopt", "its workflow is gone: follow the provider job"
            return item, None
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
        for job, problem in suspects:
            item, snapshot = await self._plan(job, problem)
            if item.action == "none" and problem == "unfinished":
                continue  # the provider is still working: nothing to report
            if not dry_run and item.action != "none":
                item = await self._act(job, item, snapshot)
            report.items.append(item)
        return report

    async def _act(
        self, job: Job, item: RecoveryItem, snapshot: ProviderSnapshot | None
    ) -> RecoveryItem:
        try:
            if item.action == "nudge":
                assert snapshot is not None  # a nudge is planned on a terminal snapshot
                await self._temporal.get_workflow_handle(media_job_workflow_id(job.id)).signal(
                    "provider_event", ProviderEvent(snapshot=snapshot, webhook_id="recovery")
                )
                result = "done"
            elif item.action in ("adopt", "restore"):
                if item.action == "restore":
                    await self._reopen(job.id, item.problem)
                await self._adopt(job)
                result = "started"
            else:  # needs_regeneration
                await self._mark_needs_regeneration(job.id, item.detail)
                result = "needs_regeneration"
        except (RPCError, ProviderError) as exc:
            result, item.detail = "failed", f"{item.detail}; {type(exc).__name__}: {exc}"
        item = replace(item, result=result)
        async with self._sessions() as session, session.begin():
            session.add(
                RecoveryAttempt(
                    job_id=job.id, problem=item.problem, action=item.action, result=result,
                    detail=item.detail,
                )
            )  # fmt: skip
        return item

    async def _adopt(self, job: Job) -> None:
        assert job.provider_job_id is not None
        kind = JobKind(job.kind)
        await start_job_workflow(
            self._temporal,
            self._settings,
            MediaJobInput(
                job_id=job.id, user_id=job.user_id, kind=kind, provider=job.provider,
                model=job.model, input=job.input,
                webhook_url=webhook_url(self._settings, job.provider, job.id),
                poll=poll_policy(self._settings, kind), project_id=job.project_id,
                node_id=job.node_id, adopt_provider_job_id=job.provider_job_id,
            ),
        )  # fmt: skip

    async def _reopen(self, job_id: str, problem: str) -> None:
        """Put a failed (or succeeded but emptied) job back to `queued` for its new workflow."""
        async with self._sessions() as session, session.begin():
            job = (
                await session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(
                        status=JobStatus.QUEUED.value,
                        error=None,
                        completed_at=None,
                        recovery_state="recovered",
                        recovery_reason=problem,
                        updated_at=utcnow(),
                    )
                    .returning(Job)
                    .execution_options(synchronize_session=False)
                )
            ).scalar_one()
            await append_event(session, user_topic(job.user_id), "job.queued", job_payload(job))

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

    @activity.defn(name="recovery.sweep")
    async def sweep(self, dry_run: bool) -> RecoveryReport:
        return await self._sweeper.sweep(dry_run)
