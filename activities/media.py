"""Activities of MediaJobWorkflow: every side effect of a media job.

The output copy and the provider cancel are regular activities (long or rare: heartbeats,
visible in the UI). The submit, the polls and the forward-only writes of the job record are
short and run as local activities: they cost no server round trip of their own, which is most
of a job's cost on the server (see shared/reference/dev-server-limits.md and bench/).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from core.contracts import (
    ERR_OUTPUT_EXPIRED,
    ERR_OUTPUT_INVALID,
    ERR_OUTPUT_VANISHED,
    ERR_PROVIDER_RATE_LIMITED,
    ERR_PROVIDER_REJECTED,
    ERR_SUBMIT_UNCONFIRMED,
    MEDIA_CANCEL,
    MEDIA_POLL,
    MEDIA_RECORD,
    MEDIA_STORE_OUTPUTS,
    MEDIA_SUBMIT,
    STORAGE_CONTEXT,
    TERMINAL_JOB_STATUSES,
    TERMINAL_PHASES,
    JobKind,
    JobProgress,
    JobStatus,
    ProviderRef,
    ProviderSnapshot,
    StoredOutput,
    StoredThumbnail,
    StoreRequest,
    StoreResult,
    SubmitRequest,
)
from core.db import uninterrupted
from core.jobs.store import advance_job
from core.models import Job, utcnow
from core.outbound import OutboundFetcher, OutboundRefused, OutboundTooLarge
from core.settings import Settings
from core.usage.costs import JobCost
from providers import registry
from providers.base import (
    Provider,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    SendGate,
    UsageReader,
)
from storage.base import Storage
from storage.copy import SourceGone, SourceRefused, UnsafeKey, copy_output

# Job statuses after which nothing may reach a provider any more.
ENDED = [status.value for status in TERMINAL_JOB_STATUSES]


@dataclass(frozen=True)
class SubmitCount:
    """The submit attempts of a job that went out before this one."""

    attempts: int
    refusals: int
    created_at: datetime

    @property
    def unconfirmed(self) -> int:
        """Attempts sent that may have created a provider job (neither refused nor seen)."""
        return self.attempts - self.refusals


def made_nothing(exc: BaseException) -> bool:
    """Whether a failed create certainly made no provider job: the provider refused it with
    an answer, or the connection was never made. A timeout, a dropped connection after the
    request went out or an unreadable 2xx may have made one."""
    if isinstance(exc, ProviderRejected | ProviderRateLimited):
        return True
    if isinstance(exc, ProviderUnavailable):
        return exc.answered
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def _ended_before_submit(status: str) -> ApplicationError:
    return ApplicationError(
        f"the job was {status} before it reached the provider",
        type=ERR_PROVIDER_REJECTED,
        non_retryable=True,
    )


@contextmanager
def provider_errors() -> Iterator[None]:
    """Map provider errors to Temporal retry decisions; anything else retries by policy."""
    try:
        yield
    except ProviderRejected as exc:
        raise ApplicationError(str(exc), type=ERR_PROVIDER_REJECTED, non_retryable=True) from exc
    except ProviderRateLimited as exc:
        raise ApplicationError(
            str(exc),
            type=ERR_PROVIDER_RATE_LIMITED,
            next_retry_delay=timedelta(seconds=max(exc.retry_after, 0.1)),
        ) from exc


class MediaActivities:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        providers: dict[str, Provider],
        fetcher: OutboundFetcher,
        thumbnail_max_edge: int = 512,
        settings: Settings | None = None,
        on_rate_limited: Callable[[str, float], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._providers = providers
        self._fetcher = fetcher
        self._thumbnail_max_edge = thumbnail_max_edge
        # Prices jobs (PROVIDER_PRICES); without it, costs are left unknown.
        self._settings = settings
        # Told of a create's 429 (provider, Retry-After): the provider's line pauses for it.
        self._on_rate_limited = on_rate_limited

    def _provider(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise ApplicationError(
                f"provider {name!r} is not configured on this worker",
                type=ERR_PROVIDER_REJECTED,
                non_retryable=True,
            ) from None

    async def _advance(self, job_id: str, status: JobStatus, **fields: Any) -> None:
        """Record the job's progress; the write completes even if the activity is cancelled."""

        async def write() -> None:
            async with self._sessions() as session:
                await advance_job(session, job_id, status, **fields)
                await session.commit()

        await uninterrupted(write())

    @activity.defn(name=MEDIA_SUBMIT)
    async def submit(self, request: SubmitRequest) -> ProviderSnapshot:
        """Create the job's provider job, once; nothing is written after the provider took it.

        Each attempt is counted in the database as its request is about to leave (SendGate):
        an attempt that never got that far (no connection, a worker killed while connecting)
        sent nothing and counts for nothing. An attempt the provider refused with an answer
        (a 429, an error status) is counted as refused: it made no provider job. Any other
        counted attempt (no answer, a timeout, a worker killed mid-call, which re-runs this
        local activity from scratch) may have made one whose answer we never saw:
        - where the provider's jobs can be looked up (`Provider.find`), it is adopted rather
          than created again;
        - where they can't (fal, KIE), nothing is created: `SubmitUnconfirmed` tells the
          workflow to wait for that job's webhook (bound to this job by its URL token).
        The workflow records SUBMITTED and the provider job id in a step of its own, so a
        failed write there retries the write, not the create.
        """
        provider = self._provider(request.provider)
        earlier = await self._earlier_submits(request.job_id)
        with provider_errors():
            if earlier is None or earlier.attempts > 0:
                if provider.lookup or earlier is None:
                    since = earlier.created_at if earlier else None
                    found = await provider.find(request, since=since)
                    if found:
                        return await self._adopt_found(provider, request, found)
                elif earlier.unconfirmed:
                    raise ApplicationError(
                        f"an interrupted submit may have created a {provider.name} job for "
                        f"this job ({earlier.unconfirmed} attempt(s) without an answer) and "
                        f"{provider.name} has no way to look it up: waiting for its webhook "
                        "rather than paying for a second one",
                        type=ERR_SUBMIT_UNCONFIRMED,
                        non_retryable=True,
                    )
            gate = None
            if earlier is not None:
                seen = earlier.attempts
                gate = SendGate(lambda: self._count_submit(request.job_id, seen))
            try:
                snapshot = await provider.submit(request, gate=gate)
            except Exception as exc:
                if gate is not None and gate.fired and made_nothing(exc):
                    await self._count_refusal(request.job_id)
                if isinstance(exc, ProviderRateLimited) and self._on_rate_limited is not None:
                    await self._on_rate_limited(request.provider, exc.retry_after)
                raise
            if gate is not None and not gate.fired:
                # A transport that doesn't trace (a test's mock): the create went out uncounted.
                await self._count_submit(request.job_id, seen)
            return snapshot

    async def _earlier_submits(self, job_id: str) -> SubmitCount | None:
        """The job's submit attempts so far; None for a job without a row (it can't say what
        earlier attempts did). A job that ended before its submit (cancelled while queued,
        with no workflow yet) must never reach a provider."""

        async def read() -> tuple[str, int, int, datetime] | None:
            async with self._sessions() as session:
                row = (
                    await session.execute(
                        select(
                            Job.status, Job.submit_attempts, Job.submit_refusals, Job.created_at
                        ).where(Job.id == job_id)
                    )
                ).one_or_none()
            return None if row is None else (row[0], int(row[1]), int(row[2]), row[3])

        row = await uninterrupted(read())
        if row is None:
            return None
        status, attempts, refusals, created_at = row
        if status in ENDED:
            raise _ended_before_submit(status)
        return SubmitCount(attempts=attempts, refusals=refusals, created_at=created_at)

    async def _count_submit(self, job_id: str, seen: int) -> None:
        """Count the attempt about to be sent. Only if no other attempt was counted since this
        one read the count (two runs of one submit: a local activity re-run while the first is
        still alive), and only while the job has not ended: otherwise this one is not sent."""

        async def write() -> str | None:
            async with self._sessions() as session:
                counted = await session.execute(
                    update(Job)
                    .where(
                        Job.id == job_id,
                        Job.status.not_in(ENDED),
                        Job.submit_attempts == seen,
                    )
                    .values(submit_attempts=Job.submit_attempts + 1)
                    .execution_options(synchronize_session=False)
                )
                status = None
                if cast(CursorResult[Any], counted).rowcount == 0:
                    status = await session.scalar(select(Job.status).where(Job.id == job_id))
                await session.commit()
            return None if cast(CursorResult[Any], counted).rowcount else (status or "gone")

        refused = await uninterrupted(write())
        if refused is None:
            return
        if refused in ENDED:
            raise _ended_before_submit(refused)
        raise ApplicationError(
            "another submit attempt of this job was sent meanwhile; this one was not",
            type="SubmitRaced",
        )

    async def _count_refusal(self, job_id: str) -> None:
        """Note an attempt that made no provider job. Best effort: if the write fails, the
        attempt stays unconfirmed, which only costs a wait, never a second provider job."""

        async def write() -> None:
            async with self._sessions() as session:
                await session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(submit_refusals=Job.submit_refusals + 1)
                    .execution_options(synchronize_session=False)
                )
                await session.commit()

        try:
            await uninterrupted(write())
        except Exception as exc:  # the database is away: the attempt stays unconfirmed
            activity.logger.warning("job %s: refused submit not counted: %s", job_id, exc)

    async def _adopt_found(
        self, provider: Provider, request: SubmitRequest, found: list[ProviderSnapshot]
    ) -> ProviderSnapshot:
        """Take the oldest provider job earlier attempts made; cancel the others still running
        (one we created and lost track of must not run on, billed, for nobody)."""
        adopted, extras = found[0], found[1:]
        activity.logger.warning(
            "job %s: adopting %s job %s, created by an earlier submit attempt%s",
            request.job_id,
            provider.name,
            adopted.provider_job_id,
            f"; cancelling {len(extras)} more" if extras else "",
        )
        for extra in extras:
            if extra.phase in TERMINAL_PHASES:
                continue
            ref = ProviderRef(
                job_id=request.job_id,
                kind=request.kind,
                provider=request.provider,
                provider_job_id=extra.provider_job_id,
                model=request.model,
            )
            try:
                await provider.cancel(ref)
            except ProviderRejected as exc:  # gone or finished: nothing left to stop
                activity.logger.warning("could not cancel %s: %s", extra.provider_job_id, exc)
        return adopted

    @activity.defn(name=MEDIA_POLL)
    async def poll(self, ref: ProviderRef) -> ProviderSnapshot:
        with provider_errors():
            return await self._provider(ref.provider).get(ref)

    @activity.defn(name=MEDIA_CANCEL)
    async def cancel(self, ref: ProviderRef) -> ProviderSnapshot:
        with provider_errors():
            return await self._provider(ref.provider).cancel(ref)

    @activity.defn(name=MEDIA_RECORD)
    async def record(self, progress: JobProgress) -> None:
        fields: dict[str, Any] = {
            "webhook_count": progress.webhook_count,
            "poll_count": progress.poll_count,
        }
        for name in ("provider_status", "provider_job_id", "error"):
            if getattr(progress, name) is not None:
                fields[name] = getattr(progress, name)
        if progress.provider_phase is not None:
            fields["provider_phase"] = progress.provider_phase.value
        if progress.output_data:
            fields["output_data"] = progress.output_data
        if progress.status == JobStatus.PROCESSING:
            fields["started_at"] = utcnow()
        await self._advance(progress.job_id, progress.status, **fields)

    @activity.defn(name=MEDIA_STORE_OUTPUTS)
    async def store_outputs(self, request: StoreRequest) -> StoreResult:
        """Copy every output to storage, then (and only then) record the job `succeeded`.

        Safe to run again at any time: an attempt that finds the job already succeeded with
        its objects in place returns that record; objects an attempt wrote are deleted only
        while no attempt has recorded the job succeeded (see `_clean_up`).
        """
        snapshot = request.snapshot
        recorded = await self._recorded_result(request.job_id)
        if recorded is not None:
            return recorded
        await self._advance(
            request.job_id,
            JobStatus.STORING,
            provider_status=snapshot.provider_status,
            provider_phase=snapshot.phase.value,
            webhook_count=request.webhook_count,
            poll_count=request.poll_count,
        )

        urls = _output_urls(request)
        if snapshot.data_removed:
            raise ApplicationError(
                "the provider removed the outputs before they could be stored",
                type=ERR_OUTPUT_EXPIRED,
                non_retryable=True,
            )
        if not urls and request.kind != JobKind.TRAINING:
            raise ApplicationError(
                "the provider reported success but returned no output file",
                type=ERR_OUTPUT_INVALID,
                non_retryable=True,
            )
        outputs: list[StoredOutput] = []
        stored_keys: list[str] = []
        try:
            # Heartbeats go on until the success record is committed: a commit waiting for the
            # database must not look like a dead worker, or a second attempt would start.
            async with heartbeating():
                with tempfile.TemporaryDirectory(prefix="autosync-") as tmp:
                    for index, url in enumerate(urls):
                        outputs.append(
                            await self._copy_one(url, Path(tmp), request, index, stored_keys)
                        )
                output_data = _with_stored_keys(snapshot.output_data, outputs)
                await self._record_success(request, outputs, output_data)
        except BaseException:
            await self._clean_up(request.job_id, stored_keys)
            raise
        return StoreResult(
            outputs=outputs,
            storage_provider=self._storage.name,
            storage_bucket=self._storage.bucket,
            output_data=output_data,
        )

    async def _recorded_result(self, job_id: str) -> StoreResult | None:
        """The result an earlier attempt committed, if the job succeeded and its objects exist.

        A succeeded job with a missing object (a recovery restore) is copied again.
        """
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(
                        Job.status,
                        Job.outputs,
                        Job.output_data,
                        Job.storage_keys,
                        Job.storage_provider,
                        Job.storage_bucket,
                    ).where(Job.id == job_id)
                )
            ).one_or_none()
        if row is None or row.status != JobStatus.SUCCEEDED.value:
            return None
        keys = [str(k) for k in row.storage_keys or []]
        present = await asyncio.gather(*(self._storage.exists(k) for k in keys))
        if not all(present):
            return None
        return StoreResult(
            outputs=[_stored(o) for o in row.outputs or []],
            storage_provider=row.storage_provider or self._storage.name,
            storage_bucket=row.storage_bucket,
            output_data=dict(row.output_data or {}),
        )

    async def _record_success(
        self, request: StoreRequest, outputs: list[StoredOutput], output_data: dict[str, Any]
    ) -> None:
        """Record the job `succeeded` with its outputs, fenced against a concurrent clean-up.

        The update takes the job row's lock first (on SQLite, the database's write lock), and
        only then are the objects checked: a clean-up takes the same lock before deleting, so
        either it ran first and the check fails (this attempt fails and is retried, copying
        again), or this commit lands first and the clean-up sees `succeeded` and deletes nothing.
        """
        snapshot = request.snapshot
        async with self._sessions() as session:
            # Columns, not the entity: advance_job's RETURNING must load a fresh Job.
            current = (
                await session.execute(
                    select(Job.metadata_, Job.model).where(Job.id == request.job_id)
                )
            ).one_or_none()
        # Read and write in separate transactions: on SQLite a reader can't become a writer
        # while others write (it fails at once instead of waiting its turn).
        metadata = dict(current.metadata_ or {}) if current is not None else {}
        model = current.model if current is not None else ""
        cost = await self._cost(request, model)
        metadata["storage"] = _storage_summary(outputs, request, self._storage)
        # Every object the job owns: outputs first, then their thumbnails.
        keys = [o.key for o in outputs] + [o.thumbnail.key for o in outputs if o.thumbnail]

        async def write() -> None:
            async with self._sessions() as session:
                changed = await advance_job(
                    session,
                    request.job_id,
                    JobStatus.SUCCEEDED,
                    outputs=[_public(o) for o in outputs],
                    output_data=output_data,
                    storage_provider=self._storage.name,
                    storage_bucket=self._storage.bucket,
                    storage_keys=keys,
                    metadata_=metadata,
                    operation_type=request.kind.value,
                    storage_context=STORAGE_CONTEXT.get(request.kind),
                    provider_status=snapshot.provider_status,
                    provider_phase=snapshot.phase.value,
                    webhook_count=request.webhook_count,
                    poll_count=request.poll_count,
                    error=None,
                    # Unknown this time (a restore whose provider no longer tells): kept as is.
                    **_cost_fields(cost),
                )
                if changed:
                    present = await asyncio.gather(*(self._storage.exists(k) for k in keys))
                    if not all(present):
                        await session.rollback()
                        missing = [k for k, ok in zip(keys, present, strict=True) if not ok]
                        # Retryable: the next attempt copies them again.
                        raise ApplicationError(
                            f"stored objects vanished before the job was recorded: {missing}",
                            type=ERR_OUTPUT_VANISHED,
                        )
                await session.commit()

        await uninterrupted(write())

    async def _cost(self, request: StoreRequest, model: str) -> JobCost | None:
        """What the job cost, from the snapshot's accounting or, when its webhook carried none,
        the provider's (one read, best effort: a cost left unknown is counted as unpriced)."""
        if self._settings is None or not request.provider:
            return None
        usage = request.snapshot.usage
        provider = self._providers.get(request.provider)
        if not usage and isinstance(provider, UsageReader):
            ref = ProviderRef(
                job_id=request.job_id,
                kind=request.kind,
                provider=request.provider,
                provider_job_id=request.snapshot.provider_job_id,
                model=model,
            )
            try:
                usage = await provider.usage(ref)
            except (ProviderError, httpx.HTTPError) as exc:
                activity.logger.warning("no accounting of job %s: %s", request.job_id, exc)
                return None
        return registry.job_cost(self._settings, request.provider, model, usage)

    async def _clean_up(self, job_id: str, keys: list[str]) -> None:
        """Delete what a failed or cancelled attempt stored, unless the job is recorded
        succeeded: then those keys hold the committed attempt's objects (same keys, same bytes).

        The check and the deletes run under the job row's lock (see `_record_success`), so no
        commit can land between them. When the check can't be made (the database is down),
        nothing is deleted: an orphan object is harmless, a deleted committed one is not.
        """
        if not keys:
            return

        async def clean() -> None:
            async with self._sessions() as session:
                # A no-op write that matches only an unfinished-or-failed job, for its lock.
                claimed = await session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status != JobStatus.SUCCEEDED.value)
                    .values(updated_at=Job.updated_at)
                    .execution_options(synchronize_session=False)
                )
                if _rowcount(claimed) == 0:
                    await session.rollback()
                    activity.logger.info("job %s is recorded succeeded: its objects stay", job_id)
                    return
                for key in keys:
                    try:
                        await self._storage.delete(key)
                    except Exception:
                        activity.logger.warning("could not delete %s after a failed copy", key)
                await session.commit()

        try:
            await uninterrupted(clean())
        except Exception:
            activity.logger.warning(
                "could not check job %s before cleaning up: its %d object(s) stay",
                job_id,
                len(keys),
                exc_info=True,
            )

    async def _copy_one(
        self, url: str, workdir: Path, request: StoreRequest, index: int, stored: list[str]
    ) -> StoredOutput:
        try:
            return await copy_output(
                self._fetcher,
                self._storage,
                url,
                workdir,
                context=STORAGE_CONTEXT[request.kind],
                user_id=request.user_id,
                job_id=request.job_id,
                index=index,
                thumbnail_max_edge=self._thumbnail_max_edge,
                stored=stored,
                provider=request.provider or None,
            )
        except OutboundTooLarge as exc:
            # Nothing was uploaded: the cap stops the download before put_file.
            raise ApplicationError(
                f"output {index} is {exc}", type=ERR_OUTPUT_INVALID, non_retryable=True
            ) from exc
        except OutboundRefused as exc:
            raise ApplicationError(
                f"output {index} refused: {exc}", type=ERR_OUTPUT_INVALID, non_retryable=True
            ) from exc
        except SourceGone as exc:
            raise ApplicationError(
                f"output {index} expired at the provider before it could be stored ({exc})",
                type=ERR_OUTPUT_EXPIRED,
                non_retryable=True,
            ) from exc
        except SourceRefused as exc:
            raise ApplicationError(
                f"output {index} could not be downloaded ({exc})",
                type=ERR_OUTPUT_INVALID,
                non_retryable=True,
            ) from exc
        except UnsafeKey as exc:
            raise ApplicationError(str(exc), type=ERR_OUTPUT_INVALID, non_retryable=True) from exc


def _output_urls(request: StoreRequest) -> list[str]:
    """The files to store: the snapshot's output URLs.

    A training snapshot recorded before trainings' files were listed there (a workflow that
    was running during the upgrade) carries them only as URL values of `output_data`.
    """
    snapshot = request.snapshot
    if snapshot.output_urls or request.kind != JobKind.TRAINING:
        return list(snapshot.output_urls)
    return [
        value
        for value in snapshot.output_data.values()
        if isinstance(value, str) and value.startswith(("http://", "https://"))
    ]


def _with_stored_keys(data: dict[str, Any], outputs: list[StoredOutput]) -> dict[str, Any]:
    """`output_data` plus `stored`: for each of its fields that named a file we copied (a
    training's `weights`, a LoRA file), the key of the permanent copy; the provider's URL
    expires, the key doesn't."""
    by_url = {o.source_url: o.key for o in outputs}
    stored = {
        name: by_url[value]
        for name, value in data.items()
        if isinstance(value, str) and value in by_url
    }
    return {**data, "stored": stored} if stored else dict(data)


def _cost_fields(cost: JobCost | None) -> dict[str, Any]:
    if cost is None:
        return {}
    return {"cost_usd": cost.usd, "cost_source": cost.source, "cost_detail": cost.detail}


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


def _stored(output: dict[str, Any]) -> StoredOutput:
    """An output as `jobs.outputs` keeps it (`_public`), back as a StoredOutput."""
    thumbnail = output.get("thumbnail")
    return StoredOutput(
        index=int(output["index"]),
        key=str(output["key"]),
        content_type=str(output["content_type"]),
        bytes=int(output["bytes"]),
        sha256=str(output["sha256"]),
        source_url=str(output.get("source_url") or ""),
        width=output.get("width"),
        height=output.get("height"),
        thumbnail=StoredThumbnail(**thumbnail) if thumbnail else None,
        metadata=dict(output.get("metadata") or {}),
    )


def _public(output: StoredOutput) -> dict[str, Any]:
    """The output as the job record keeps it (`jobs.outputs`)."""
    thumbnail = output.thumbnail
    return {
        "index": output.index,
        "key": output.key,
        "content_type": output.content_type,
        "bytes": output.bytes,
        "sha256": output.sha256,
        "source_url": output.source_url,
        "width": output.width,
        "height": output.height,
        "thumbnail": (
            {
                "key": thumbnail.key,
                "content_type": thumbnail.content_type,
                "width": thumbnail.width,
                "height": thumbnail.height,
                "bytes": thumbnail.bytes,
            }
            if thumbnail is not None
            else None
        ),
        "metadata": output.metadata,
    }


def _storage_summary(
    outputs: list[StoredOutput], request: StoreRequest, storage: Storage
) -> dict[str, Any]:
    """What `jobs.metadata["storage"]` says about where and how the outputs were stored."""
    return {
        "provider": storage.name,
        "bucket": storage.bucket,
        "context": STORAGE_CONTEXT.get(request.kind),
        "operation_type": request.kind.value,
        "outputs": len(outputs),
        "thumbnails": sum(o.thumbnail is not None for o in outputs),
        "bytes": sum(o.bytes for o in outputs),
        "stored_at": utcnow().isoformat(),
    }
