"""Activities of MediaJobWorkflow: every side effect of a media job.

The output copy and the provider cancel are regular activities (long or rare: heartbeats,
visible in the UI). The submit, the polls and the forward-only writes of the job record are
short and run as local activities: they cost no server round trip of their own, which is most
of a job's cost on the server (see shared/reference/dev-server-limits.md and bench/).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeat import heartbeating
from core.contracts import (
    ERR_OUTPUT_EXPIRED,
    ERR_OUTPUT_INVALID,
    ERR_PROVIDER_RATE_LIMITED,
    ERR_PROVIDER_REJECTED,
    STORAGE_CONTEXT,
    JobKind,
    JobProgress,
    JobStatus,
    ProviderRef,
    ProviderSnapshot,
    StoredOutput,
    StoreRequest,
    StoreResult,
    SubmitRequest,
)
from core.db import uninterrupted
from core.job_store import advance_job
from core.models import Job, utcnow
from core.outbound import OutboundFetcher, OutboundRefused, OutboundTooLarge
from providers.base import Provider, ProviderRateLimited, ProviderRejected
from storage.base import Storage
from storage.copy import SourceGone, SourceRefused, UnsafeKey, copy_output


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
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._providers = providers
        self._fetcher = fetcher
        self._thumbnail_max_edge = thumbnail_max_edge

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

    @activity.defn(name="media.submit")
    async def submit(self, request: SubmitRequest) -> ProviderSnapshot:
        with provider_errors():
            snapshot = await self._provider(request.provider).submit(request)
        await self._advance(
            request.job_id,
            JobStatus.SUBMITTED,
            provider_job_id=snapshot.provider_job_id,
            provider_status=snapshot.provider_status,
        )
        return snapshot

    @activity.defn(name="media.poll")
    async def poll(self, ref: ProviderRef) -> ProviderSnapshot:
        with provider_errors():
            return await self._provider(ref.provider).get(ref)

    @activity.defn(name="media.cancel")
    async def cancel(self, ref: ProviderRef) -> ProviderSnapshot:
        with provider_errors():
            return await self._provider(ref.provider).cancel(ref)

    @activity.defn(name="media.record")
    async def record(self, progress: JobProgress) -> None:
        fields: dict[str, Any] = {
            "webhook_count": progress.webhook_count,
            "poll_count": progress.poll_count,
        }
        for name in ("provider_status", "provider_job_id", "error"):
            if getattr(progress, name) is not None:
                fields[name] = getattr(progress, name)
        if progress.output_data:
            fields["output_data"] = progress.output_data
        if progress.status == JobStatus.PROCESSING:
            fields["started_at"] = utcnow()
        await self._advance(progress.job_id, progress.status, **fields)

    @activity.defn(name="media.store_outputs")
    async def store_outputs(self, request: StoreRequest) -> StoreResult:
        """Copy every output to storage, then (and only then) record the job `succeeded`."""
        snapshot = request.snapshot
        await self._advance(
            request.job_id,
            JobStatus.STORING,
            provider_status=snapshot.provider_status,
            webhook_count=request.webhook_count,
            poll_count=request.poll_count,
        )

        outputs: list[StoredOutput] = []
        if request.kind != JobKind.TRAINING:
            if snapshot.data_removed:
                raise ApplicationError(
                    "the provider removed the outputs before they could be stored",
                    type=ERR_OUTPUT_EXPIRED,
                    non_retryable=True,
                )
            if not snapshot.output_urls:
                raise ApplicationError(
                    "the provider reported success but returned no output file",
                    type=ERR_OUTPUT_INVALID,
                    non_retryable=True,
                )
            stored_keys: list[str] = []
            try:
                async with heartbeating():
                    with tempfile.TemporaryDirectory(prefix="autosync-") as tmp:
                        for index, url in enumerate(snapshot.output_urls):
                            outputs.append(
                                await self._copy_one(url, Path(tmp), request, index, stored_keys)
                            )
            except BaseException:
                # Cancelled or failed half way: leave no partial set of objects behind.
                for key in stored_keys:
                    try:
                        await self._storage.delete(key)
                    except Exception:
                        activity.logger.warning("could not delete %s after a failed copy", key)
                raise

        async with self._sessions() as session:
            # A column, not the entity: advance_job's RETURNING must load a fresh Job.
            current = await session.scalar(select(Job.metadata_).where(Job.id == request.job_id))
        # Read and write in separate transactions: on SQLite a reader can't become a writer
        # while others write (it fails at once instead of waiting its turn).
        metadata = dict(current or {})
        metadata["storage"] = _storage_summary(outputs, request, self._storage)
        await self._advance(
            request.job_id,
            JobStatus.SUCCEEDED,
            outputs=[_public(o) for o in outputs],
            output_data=snapshot.output_data,
            storage_provider=self._storage.name,
            storage_bucket=self._storage.bucket,
            # Every object the job owns: outputs first, then their thumbnails.
            storage_keys=[o.key for o in outputs]
            + [o.thumbnail.key for o in outputs if o.thumbnail is not None],
            metadata_=metadata,
            operation_type=request.kind.value,
            storage_context=STORAGE_CONTEXT.get(request.kind),
            provider_status=snapshot.provider_status,
            webhook_count=request.webhook_count,
            poll_count=request.poll_count,
            error=None,
        )
        return StoreResult(
            outputs=outputs,
            storage_provider=self._storage.name,
            storage_bucket=self._storage.bucket,
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
