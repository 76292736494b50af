"""Housekeeping activities, run on a schedule."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from core.events import prune_events


class MaintenanceActivities:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    @activity.defn(name="events.prune")
    async def prune_events(self, retention_hours: float) -> int:
        """Delete events older than `retention_hours`; returns how many went."""
        async with self._sessions() as session, session.begin():
            return await prune_events(session, timedelta(hours=retention_hours))
