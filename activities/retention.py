"""The retention cleanup's activity: one batch of `core.retention.cleanup`, with its progress
in the worker's log."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.retention.cleanup import ObjectStore, run_batch
from core.retention.contracts import RETENTION_BATCH, RetentionBatchInput, RetentionBatchResult
from core.settings import Settings


class RetentionActivities:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        storage: ObjectStore,
        settings: Settings,
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._settings = settings

    @activity.defn(name=RETENTION_BATCH)
    async def batch(self, batch: RetentionBatchInput) -> RetentionBatchResult:
        """Expire up to `batch_size` due jobs after the cursor; see core.retention.cleanup."""
        result = await run_batch(self._sessions, self._storage, self._settings, batch)
        activity.logger.info(
            "retention: %d due jobs looked at, %d expired, %d kept (a project shows them), "
            "%d objects deleted%s",
            result.looked_at,
            result.expired,
            result.kept,
            result.objects_deleted,
            "" if result.done else f"; more after {result.last_completed_at} {result.last_id}",
        )
        return result
