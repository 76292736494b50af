"""The activities of a batch (`workflows.bulk_jobs`): act on one chunk of its jobs, finish.

A chunk's jobs are acted on a few at a time (BULK_CONCURRENCY), each in a session of its own,
and each outcome is written as soon as it is known (`core.jobs.bulk`), so a chunk retried after
a crash or an outage goes on with the jobs it had not reached.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from core.batch_contracts import (
    ACT_BATCH_CHUNK,
    ACT_BATCH_FINISH,
    BatchChunk,
    BatchEnd,
    BatchProgress,
    BatchStatus,
)
from core.jobs.bulk import (
    act_on_item,
    batch_ref,
    pending_items,
    publish_progress,
    record_outcome,
)
from core.settings import Settings

log = logging.getLogger(__name__)


class BulkJobActivities:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], temporal: Client, settings: Settings
    ) -> None:
        self._sessions = sessions
        self._temporal = temporal
        self._settings = settings

    @activity.defn(name=ACT_BATCH_CHUNK)
    async def run_chunk(self, chunk: BatchChunk) -> BatchProgress:
        """Act on the chunk's jobs that have no outcome yet; the batch's progress after it."""
        async with self._sessions() as session:
            batch = await batch_ref(session, chunk.batch_id)
            if batch is None:
                raise ApplicationError(f"no batch {chunk.batch_id}", non_retryable=True)
            items = await pending_items(session, chunk.batch_id, chunk.start, chunk.size)
        gate = asyncio.Semaphore(self._settings.bulk_concurrency)

        async def one(seq: int, job_id: str) -> None:
            async with gate, self._sessions() as session:
                result = await act_on_item(session, self._temporal, self._settings, batch, job_id)
                await record_outcome(session, batch.id, seq, result)
            activity.heartbeat(seq)

        results = await asyncio.gather(
            *(one(seq, job_id) for seq, job_id in items), return_exceptions=True
        )
        async with self._sessions() as session:
            progress = await publish_progress(session, batch.id)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for error in errors[:3]:
                log.warning("batch %s: %s", batch.id, error, exc_info=error)
            # Retried: the jobs acted on keep their outcome, the others are tried again.
            raise ApplicationError(
                f"{len(errors)} of {len(items)} jobs could not be acted on now: {errors[0]}"
            )
        return progress

    @activity.defn(name=ACT_BATCH_FINISH)
    async def finish(self, end: BatchEnd) -> BatchProgress:
        """Record the batch's end (`done`, or `failed` with its error) and publish it."""
        status = BatchStatus.FAILED if end.error else BatchStatus.DONE
        async with self._sessions() as session:
            return await publish_progress(session, end.batch_id, end=status, error=end.error)
