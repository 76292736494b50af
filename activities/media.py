"""Activities of MediaJobWorkflow: every side effect of a media job.

The output copy and the provider cancel are regular activities (long or rare: heartbeats,
visible in the UI). The submit, the polls and the forward-only writes of the job record are
short and run as local activities: they cost no server round trip of their own, which is most
of a job's cost on the server (see shared/reference/dev-server-limits.md and bench/).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
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
from core.job_store import advance_job
from core.models import utcnow
from providers.base import Provider, ProviderRateLimited, ProviderRejected
from storage.base import Storage
from storage.keys import output_key
from storage.sniff import sniff


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
        http: httpx.AsyncClient,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._providers = providers
        self._http = http

    def _provider(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise ApplicationError(
                f"provider {name!r} is not configured on this worker",
                type=ERR_PROVIDER_REJECTED,
                non_retryable=True,
            ) from None

    @activity.defn(name="media.submit")
    async def submit(self, request: SubmitRequest) -> ProviderSnapshot:
        with provider_errors():
            snapshot = await self._provider(request.provider).submit(request)
        async with self._sessions() as session:
            await advance_job(
                session,
                request.job_id,
                JobStatus.SUBMITTED,
                provider_job_id=snapshot.provider_job_id,
                provider_status=snapshot.provider_status,
            )
            await session.commit()
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
        async with self._sessions() as session:
            await advance_job(session, progress.job_id, progress.status, **fields)
            await session.commit()

    @activity.defn(name="media.store_outputs")
    async def store_outputs(self, request: StoreRequest) -> StoreResult:
        """Copy every output to storage, then (and only then) record the job `succeeded`."""
        snapshot = request.snapshot
        async with self._sessions() as session:
            await advance_job(
                session,
                request.job_id,
                JobStatus.STORING,
                provider_status=snapshot.provider_status,
                webhook_count=request.webhook_count,
                poll_count=request.poll_count,
            )
            await session.commit()

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
            context = STORAGE_CONTEXT[request.kind]
            stored_keys: list[str] = []
            try:
                async with heartbeating():
                    with tempfile.TemporaryDirectory(prefix="autosync-") as tmp:
                        for index, url in enumerate(snapshot.output_urls):
                            output = await self._copy_one(
                                url, Path(tmp) / f"{index}", context, request, index
                            )
                            stored_keys.append(output.key)
                            outputs.append(output)
            except BaseException:
                # Cancelled or failed half way: leave no partial set of objects behind.
                for key in stored_keys:
                    try:
                        await self._storage.delete(key)
                    except Exception:
                        activity.logger.warning("could not delete %s after a failed copy", key)
                raise

        async with self._sessions() as session:
            await advance_job(
                session,
                request.job_id,
                JobStatus.SUCCEEDED,
                outputs=[_public(o) for o in outputs],
                output_data=snapshot.output_data,
                storage_provider=self._storage.name,
                storage_bucket=self._storage.bucket,
                storage_keys=[o.key for o in outputs],
                operation_type=request.kind.value,
                storage_context=STORAGE_CONTEXT.get(request.kind),
                provider_status=snapshot.provider_status,
                webhook_count=request.webhook_count,
                poll_count=request.poll_count,
                error=None,
            )
            await session.commit()
        return StoreResult(
            outputs=outputs,
            storage_provider=self._storage.name,
            storage_bucket=self._storage.bucket,
        )

    async def _copy_one(
        self, url: str, path: Path, context: str, request: StoreRequest, index: int
    ) -> StoredOutput:
        digest = hashlib.sha256()
        size = 0
        head = b""
        async with self._http.stream("GET", url, follow_redirects=True) as response:
            if response.status_code in (404, 410):
                raise ApplicationError(
                    f"output {index} expired at the provider before it could be stored "
                    f"(HTTP {response.status_code} for {url})",
                    type=ERR_OUTPUT_EXPIRED,
                    non_retryable=True,
                )
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                raise ApplicationError(
                    f"output {index} could not be downloaded (HTTP {response.status_code})",
                    type=ERR_OUTPUT_INVALID,
                    non_retryable=True,
                )
            response.raise_for_status()
            with path.open("wb") as handle:
                async for chunk in response.aiter_bytes():
                    if len(head) < 512:
                        head += chunk[: 512 - len(head)]
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
        content_type, ext = sniff(head, url)
        key = output_key(context, request.user_id, request.job_id, index, ext)
        await self._storage.put_file(key, path, content_type)
        return StoredOutput(
            index=index,
            key=key,
            content_type=content_type,
            bytes=size,
            sha256=digest.hexdigest(),
            source_url=url,
        )


def _public(output: StoredOutput) -> dict[str, Any]:
    return {
        "index": output.index,
        "key": output.key,
        "content_type": output.content_type,
        "bytes": output.bytes,
        "sha256": output.sha256,
        "source_url": output.source_url,
    }
