"""Housekeeping activities, run on a schedule."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.contracts import EVENTS_PRUNE
from core.events import prune_events
from core.models import IdempotencyKey, utcnow
from core.webhook_receipts import prune_receipts


class MaintenanceActivities:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], idempotency_ttl_hours: float = 24.0
    ) -> None:
        self._sessions = sessions
        self._idempotency_ttl = timedelta(hours=idempotency_ttl_hours)

    @activity.defn(name=EVENTS_PRUNE)
    async def prune_events(self, retention_hours: float) -> int:
        """Delete events older than `retention_hours`, webhook receipts older than a day and
        idempotency keys past their TTL; returns how many rows went."""
        async with self._sessions() as session, session.begin():
            events = await prune_events(session, timedelta(hours=retention_hours))
            receipts = await prune_receipts(session)
            keys = await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.created_at < utcnow() - self._idempotency_ttl
                )
            )
            return events + receipts + int(getattr(keys, "rowcount", 0) or 0)
