"""Scripted stand-ins for the media activities, registered under the real activity names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.contracts import (
    ERR_OUTPUT_EXPIRED,
    ERR_PROVIDER_RATE_LIMITED,
    ERR_PROVIDER_REJECTED,
    ERR_SUBMIT_UNCONFIRMED,
    JobProgress,
    ProviderPhase,
    ProviderRef,
    ProviderSnapshot,
    StoredOutput,
    StoreRequest,
    StoreResult,
    SubmitRequest,
)

PROVIDER_JOB_ID = "pred-1"


def snap(status: str, phase: ProviderPhase, **kw: Any) -> ProviderSnapshot:
    return ProviderSnapshot(
        provider_job_id=kw.pop("provider_job_id", PROVIDER_JOB_ID),
        provider_status=status,
        phase=phase,
        **kw,
    )


STARTING = snap("starting", ProviderPhase.QUEUED)
PROCESSING = snap("processing", ProviderPhase.RUNNING)
SUCCEEDED = snap("succeeded", ProviderPhase.SUCCEEDED, output_urls=["https://x/out-0.png"])
FAILED = snap("failed", ProviderPhase.FAILED, error="CUDA out of memory")
CANCELED = snap("canceled", ProviderPhase.CANCELED)


@dataclass
class FakeMedia:
    """Counts every call; `on_*` hooks script what the provider and storage do."""

    submit_errors: list[ApplicationError] = field(default_factory=list)
    on_poll: Callable[[int], ProviderSnapshot] = lambda n: STARTING
    store_error: ApplicationError | None = None
    store_blocks: bool = False
    submit_delay: float = 0.0
    # The next this-many `media.record` calls fail (a database outage).
    record_errors: int = 0
    record_failures: int = 0
    submits: int = 0
    submit_requests: list[SubmitRequest] = field(default_factory=list)
    polls: int = 0
    cancels: list[str] = field(default_factory=list)
    records: list[JobProgress] = field(default_factory=list)
    stores: list[StoreRequest] = field(default_factory=list)
    store_cancelled: bool = False
    store_started: asyncio.Event = field(default_factory=asyncio.Event)
    submit_started: asyncio.Event = field(default_factory=asyncio.Event)

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="media.submit")
        async def submit(request: SubmitRequest) -> ProviderSnapshot:
            self.submits += 1
            self.submit_requests.append(request)
            self.submit_started.set()
            if self.submit_delay:
                await asyncio.sleep(self.submit_delay)
            if self.submit_errors:
                raise self.submit_errors.pop(0)
            return STARTING

        @activity.defn(name="media.poll")
        async def poll(ref: ProviderRef) -> ProviderSnapshot:
            self.polls += 1
            return self.on_poll(self.polls)

        @activity.defn(name="media.cancel")
        async def cancel(ref: ProviderRef) -> ProviderSnapshot:
            self.cancels.append(ref.provider_job_id)
            return CANCELED

        @activity.defn(name="media.record")
        async def record(progress: JobProgress) -> None:
            if self.record_errors > 0:
                self.record_errors -= 1
                self.record_failures += 1
                raise ApplicationError("database is down (scripted)")
            self.records.append(progress)

        @activity.defn(name="media.store_outputs")
        async def store_outputs(request: StoreRequest) -> StoreResult:
            self.stores.append(request)
            self.store_started.set()
            if self.store_error is not None:
                raise self.store_error
            if self.store_blocks:
                try:
                    while True:
                        activity.heartbeat()
                        await asyncio.sleep(0.2)
                except asyncio.CancelledError:
                    self.store_cancelled = True
                    raise
            outputs = [
                StoredOutput(
                    index=i,
                    key=f"generated/u1/{request.job_id}_{i}.png",
                    content_type="image/png",
                    bytes=10,
                    sha256="0" * 64,
                    source_url=url,
                )
                for i, url in enumerate(request.snapshot.output_urls)
            ]
            return StoreResult(outputs=outputs, storage_provider="local", storage_bucket=None)

        return [submit, poll, cancel, record, store_outputs]


def rejected(message: str) -> ApplicationError:
    return ApplicationError(message, type=ERR_PROVIDER_REJECTED, non_retryable=True)


def rate_limited(seconds: float) -> ApplicationError:
    return ApplicationError(
        "Request was throttled",
        type=ERR_PROVIDER_RATE_LIMITED,
        next_retry_delay=timedelta(seconds=seconds),
    )


def unconfirmed() -> ApplicationError:
    return ApplicationError(
        "an interrupted submit may have created a fal job (scripted)",
        type=ERR_SUBMIT_UNCONFIRMED,
        non_retryable=True,
    )


def expired() -> ApplicationError:
    return ApplicationError(
        "output 0 expired at the provider before it could be stored (HTTP 404)",
        type=ERR_OUTPUT_EXPIRED,
        non_retryable=True,
    )
