"""Sums of what jobs cost, from the `jobs` table: GET /v1/usage and the daily spend cap.

A job counts once it succeeded (and after: a status ranked past `succeeded`, such as a job whose
outputs a retention cleanup expired, still cost what it cost), on the UTC day it completed (its cost is known only then: it
is written with the success). A succeeded job whose cost is unknown (a provider that reports
none, a model without a price, a job from before costs) counts in `jobs` but not in `usd`:
`unpriced` says how many there are, so a total is never silently short.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from core.contracts import JOB_STATUS_RANK, JobStatus
from core.models import Job
from core.usage.costs import USD_DIGITS

# Statuses of jobs that never succeeded: those ranked up to `succeeded`, but itself.
NEVER_SUCCEEDED = [
    s.value
    for s, rank in JOB_STATUS_RANK.items()
    if rank <= JOB_STATUS_RANK[JobStatus.SUCCEEDED] and s != JobStatus.SUCCEEDED
]


def succeeded_once() -> ColumnElement[bool]:
    return Job.status.not_in(NEVER_SUCCEEDED)


class GroupBy(StrEnum):
    DAY = "day"
    KIND = "kind"
    PROVIDER = "provider"
    USER = "user"


@dataclass(frozen=True)
class UsageRow:
    key: str  # the day (YYYY-MM-DD, UTC), kind, provider or user id
    usd: float
    jobs: int
    unpriced: int


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _day(session: AsyncSession) -> ColumnElement[str]:
    """A job's completion day (UTC) as YYYY-MM-DD, in the database's own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Job.completed_at), "YYYY-MM-DD")
    return func.date(Job.completed_at)  # SQLite keeps UTC datetimes as ISO text


def _key(session: AsyncSession, group_by: GroupBy) -> ColumnElement[str]:
    if group_by == GroupBy.DAY:
        return _day(session)
    column = {GroupBy.KIND: Job.kind, GroupBy.PROVIDER: Job.provider, GroupBy.USER: Job.user_id}
    return column[group_by].expression


async def usage(
    session: AsyncSession,
    *,
    user_id: str | None,
    first: date,
    last: date,
    group_by: GroupBy,
) -> list[UsageRow]:
    """Costs of the jobs that succeeded from `first` to `last` (UTC days, both included), of
    `user_id` (None: every user's), summed per `group_by`, in key order."""
    key = _key(session, group_by).label("key")
    query = (
        select(
            key,
            func.coalesce(func.sum(Job.cost_usd), 0).label("usd"),
            func.count(Job.id).label("jobs"),
            func.count(Job.cost_usd).label("priced"),
        )
        .where(
            succeeded_once(),
            Job.completed_at >= day_start(first),
            Job.completed_at < day_start(last + timedelta(days=1)),
        )
        .group_by(key)
        .order_by(key)
    )
    if user_id is not None:
        query = query.where(Job.user_id == user_id)
    rows = (await session.execute(query)).all()
    return [
        UsageRow(
            key=str(row.key),
            usd=round(float(row.usd), USD_DIGITS),
            jobs=int(row.jobs),
            unpriced=int(row.jobs) - int(row.priced),
        )
        for row in rows
    ]


async def spent_on(session: AsyncSession, user_id: str, day: date) -> float:
    """What `user_id`'s jobs that succeeded on `day` (UTC) cost, as far as known."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Job.cost_usd), 0)).where(
            Job.user_id == user_id,
            succeeded_once(),
            Job.completed_at >= day_start(day),
            Job.completed_at < day_start(day + timedelta(days=1)),
        )
    )
    return round(float(total or 0), USD_DIGITS)
