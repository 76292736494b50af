"""The provider poller's sweep: refresh one provider's jobs in flight in bulk, signal the movers.

Where the provider reads in bulk (`BulkStatus`: Replicate's list), every job in flight is asked
each sweep, so a lost webhook's completion is seen by the next sweep, within an interval:
asking about more jobs costs no more list pages, as the list is read back to the oldest job
anyway. Where each job is a read of its own, while the provider's webhooks are arriving a job
is asked once its row has not moved for `QUIET_FACTOR_WHILE_WEBHOOKS` intervals (the others
are merely long, and their webhooks will tell); when none arrived lately, every job in flight.
The jobs asked are read in bulk where the provider can, the rest one by one, at most
`rate_per_second` per provider account and `concurrency` at once. Only a job whose
provider phase moved past the one its row records is signalled, with the `provider_event` a
webhook would have sent (marked as from the poller); its workflow takes it like any event
(forward only, its own provider job only), so a late or repeated sweep changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.heartbeat import heartbeating
from core.contracts import (
    EVENT_FROM_POLLER,
    PHASE_RANK,
    PROVIDER_POLL_SWEEP,
    JobKind,
    JobStatus,
    PollSweepRequest,
    PollSweepResult,
    ProviderEvent,
    ProviderPhase,
    ProviderRef,
    ProviderSnapshot,
    media_job_workflow_id,
)
from core.models import Job, WebhookReceipt, utcnow
from providers import registry
from providers.base import BulkStatus, Provider, ProviderError

# Statuses of jobs the poller follows: their provider job exists and has not been seen ending.
FOLLOWED = (JobStatus.SUBMITTED.value, JobStatus.PROCESSING.value)
# While webhooks of a provider without a bulk read arrive, a job quiet for an interval is
# likely only a long one: ask about it after this many intervals, so a webhook lost among
# delivered ones is found within three intervals. A bulk read asks every job in flight: with 30 %
# of webhooks lost, asking only the quiet ones cost those jobs 28 s at p99 in bench/peers.py
# (10 s interval), against 9.4 s for the seeds' cron that reads every job each interval.
QUIET_FACTOR_WHILE_WEBHOOKS = 2
# Webhooks "arrive" when one came within this many intervals.
ARRIVING_WITHIN_INTERVALS = 2
# A job told of a phase is not told it again for this many intervals (its workflow records
# the move soon after; until then its row still shows the old phase).
RETELL_AFTER_INTERVALS = 3
# Jobs asked about per sweep, oldest news first (the next sweep takes the rest).
MAX_JOBS_PER_SWEEP = 20_000


class RateLimit:
    """At most `per_second` calls, spaced evenly (one provider account's single reads)."""

    def __init__(self, per_second: float) -> None:
        self._gap = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._gap
        if start > now:
            await asyncio.sleep(start - now)


@dataclass(frozen=True)
class QuietJob:
    id: str
    kind: JobKind
    model: str
    provider_job_id: str
    phase: ProviderPhase
    created_at: datetime

    def ref(self, provider: str) -> ProviderRef:
        return ProviderRef(
            job_id=self.id,
            kind=self.kind,
            provider=provider,
            provider_job_id=self.provider_job_id,
            model=self.model,
        )


def moved(recorded: ProviderPhase, seen: ProviderSnapshot) -> bool:
    """Whether the provider's word moves the job past what its row records."""
    return PHASE_RANK[seen.phase] > PHASE_RANK[recorded]


class ProviderPollerActivities:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        providers: dict[str, Provider],
        temporal: Client,
        rate_per_second: float = 20.0,
        concurrency: int = 8,
        max_pages: int = 50,
    ) -> None:
        self._sessions = sessions
        self._providers = providers
        self._temporal = temporal
        self._rate = rate_per_second
        self._concurrency = concurrency
        self._max_pages = max_pages
        self._limits: dict[str, RateLimit] = {}
        # job id -> (the phase it was told, when): no second signal for the same news.
        self._told: dict[str, tuple[ProviderPhase, float]] = {}

    @activity.defn(name=PROVIDER_POLL_SWEEP)
    async def sweep(self, request: PollSweepRequest) -> PollSweepResult:
        provider = self._providers.get(request.provider)
        if provider is None:
            activity.logger.warning("poller of %r: no such provider here", request.provider)
            return PollSweepResult()
        async with heartbeating(every=10.0, first_after=10.0):
            return await self._sweep(provider, request)

    async def _sweep(self, provider: Provider, request: PollSweepRequest) -> PollSweepResult:
        now = utcnow()
        interval = timedelta(seconds=request.interval_seconds)
        arriving = await self._webhooks_since(
            provider.name, now - ARRIVING_WITHIN_INTERVALS * interval
        )
        wait_for_quiet = arriving and not isinstance(provider, BulkStatus)
        quiet_for = interval * QUIET_FACTOR_WHILE_WEBHOOKS if wait_for_quiet else timedelta(0)
        in_flight, jobs = await self._quiet_jobs(provider.name, now - quiet_for)
        result = PollSweepResult(in_flight=in_flight, asked=len(jobs), webhooks_arriving=arriving)
        if not jobs:
            return result
        refs = [job.ref(provider.name) for job in jobs]
        found: dict[str, ProviderSnapshot] = {}
        if isinstance(provider, BulkStatus):
            since = min(job.created_at for job in jobs)
            try:
                answer = await provider.get_many(refs, since=since, max_pages=self._max_pages)
                found, result.provider_calls = answer.found, answer.calls
            except ProviderError as exc:
                activity.logger.warning(
                    "%s list failed, reading jobs one by one: %s", provider.name, exc
                )
        rest = [ref for ref in refs if ref.provider_job_id not in found]
        found.update(await self._read_each(provider, rest))
        result.provider_calls += len(rest)
        clock = time.monotonic()
        forget = clock - RETELL_AFTER_INTERVALS * request.interval_seconds
        self._told = {job_id: told for job_id, told in self._told.items() if told[1] > forget}
        movers = [
            (job, found[job.provider_job_id])
            for job in jobs
            if job.provider_job_id in found
            and moved(job.phase, found[job.provider_job_id])
            and self._told.get(job.id, (None, 0.0))[0] != found[job.provider_job_id].phase
        ]
        signalled = await asyncio.gather(*(self._signal(job, seen) for job, seen in movers))
        for (job, seen), sent in zip(movers, signalled, strict=True):
            if sent:
                self._told[job.id] = (seen.phase, clock)
        result.signalled = sum(signalled)
        return result

    async def _read_each(
        self, provider: Provider, refs: Sequence[ProviderRef]
    ) -> dict[str, ProviderSnapshot]:
        """Single reads, rate limited per provider account and bounded in number at once."""
        if not refs:
            return {}
        limit = self._limits.setdefault(provider.name, RateLimit(self._rate))
        slots = asyncio.Semaphore(self._concurrency)
        found: dict[str, ProviderSnapshot] = {}

        async def read(ref: ProviderRef) -> None:
            async with slots:
                await limit.wait()
                try:
                    found[ref.provider_job_id] = await provider.get(ref)
                except ProviderError as exc:  # the job's own poll deals with what persists
                    activity.logger.info("%s job %s: %s", provider.name, ref.job_id, exc)

        await asyncio.gather(*(read(ref) for ref in refs))
        return found

    async def _signal(self, job: QuietJob, seen: ProviderSnapshot) -> bool:
        event = ProviderEvent(snapshot=seen, webhook_id=None, source=EVENT_FROM_POLLER)
        try:
            await self._temporal.get_workflow_handle(media_job_workflow_id(job.id)).signal(
                "provider_event", event
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return False  # the workflow ended meanwhile
        return True

    async def _webhooks_since(self, provider: str, since: datetime) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(func.count())
                .select_from(WebhookReceipt)
                .where(WebhookReceipt.provider == provider, WebhookReceipt.received_at >= since)
            )
        return bool(found)

    async def _quiet_jobs(self, provider: str, quiet_since: datetime) -> tuple[int, list[QuietJob]]:
        """(jobs in flight at the provider, those whose row has not moved since `quiet_since`)."""
        spec = registry.specs().get(provider)
        async with self._sessions() as session:
            in_flight = await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.provider == provider, Job.status.in_(FOLLOWED))
            )
            rows = (
                await session.execute(
                    select(
                        Job.id, Job.kind, Job.model, Job.provider_job_id, Job.provider_phase,
                        Job.provider_status, Job.created_at,
                    )
                    .where(
                        Job.provider == provider,
                        Job.status.in_(FOLLOWED),
                        Job.provider_job_id.is_not(None),
                        Job.updated_at <= quiet_since,
                    )
                    .order_by(Job.updated_at)
                    .limit(MAX_JOBS_PER_SWEEP)
                )
            ).all()  # fmt: skip
        jobs: list[QuietJob] = []
        for row in rows:
            phase = ProviderPhase.QUEUED
            if row.provider_phase:
                phase = ProviderPhase(row.provider_phase)
            elif spec is not None and row.provider_status in spec.phases:
                phase = spec.phases[row.provider_status]
            jobs.append(
                QuietJob(
                    id=row.id,
                    kind=JobKind(row.kind),
                    model=row.model,
                    provider_job_id=str(row.provider_job_id),
                    phase=phase,
                    created_at=row.created_at,
                )
            )
        return int(in_flight or 0), jobs
