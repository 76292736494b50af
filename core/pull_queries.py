"""Pull-sync reads for the API: the status figures and the users' ranking."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import utcnow
from core.pull_models import PullAttempt, PullClient, PullCycle, PullItem, PullRecord

# Success rate and errors look this far back; lag figures over this many latest cycles.
STATUS_WINDOW = timedelta(hours=24)
LAG_CYCLES = 100


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def status(session: AsyncSession) -> dict[str, Any]:
    clients = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((PullClient.active.is_(True), 1), else_=0)), 0),
                func.coalesce(func.sum(PullClient.pending_count), 0),
            ).select_from(PullClient)
        )
    ).one()
    since = utcnow() - STATUS_WINDOW
    attempts = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((PullAttempt.ok.is_(True), 1), else_=0)), 0),
            ).where(PullAttempt.at >= since)
        )
    ).one()
    errors = (
        await session.execute(
            select(PullAttempt.client_id, PullAttempt.at, PullAttempt.error)
            .where(PullAttempt.ok.is_(False))
            .order_by(PullAttempt.id.desc())
            .limit(10)
        )
    ).all()
    cycles = (
        await session.scalars(
            select(PullCycle).where(PullCycle.mode == "all").order_by(PullCycle.finished_at.desc())
            .limit(LAG_CYCLES)
        )
    ).all()  # fmt: skip
    lags = [c.lag_seconds for c in cycles if c.scheduled_at is not None]
    records = await session.scalar(select(func.count()).select_from(PullRecord))
    total, ok = int(attempts[0]), int(attempts[1])
    last = cycles[0] if cycles else None
    return {
        "clients": {"total": int(clients[0]), "active": int(clients[1]),
                    "inactive": int(clients[0]) - int(clients[1])},
        "pending": int(clients[2]),
        "records_stored": int(records or 0),
        "pulls_24h": {"total": total, "ok": ok, "failed": total - ok,
                      "success_rate": round(ok / total, 4) if total else None},
        "last_errors": [{"client_id": c, "at": at, "error": e} for c, at, e in errors],
        "cycle_lag_seconds": {"last": last.lag_seconds if last else None,
                              "p50": percentile(lags, 0.5), "p99": percentile(lags, 0.99),
                              "cycles": len(lags)},
        "last_cycle": None if last is None else {
            "id": last.id, "finished_at": last.finished_at, "clients": last.clients,
            "ok": last.ok, "failed": last.failed, "stored": last.stored,
        },
    }  # fmt: skip


async def ranking(session: AsyncSession, limit: int) -> list[dict[str, Any]]:
    """Users by records stored, with what their items stand at now (captured, favorite)."""
    records = (
        select(PullRecord.user_id, func.count().label("records"))
        .group_by(PullRecord.user_id)
        .subquery()
    )
    items = (
        select(
            PullItem.user_id,
            func.sum(case((PullItem.action == "capture", 1), else_=0)).label("captured"),
            func.sum(case((PullItem.action == "favorite", 1), else_=0)).label("favorites"),
            func.sum(case((PullItem.action == "remove", 1), else_=0)).label("removed"),
        )
        .group_by(PullItem.user_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(
                records.c.user_id, records.c.records, items.c.captured, items.c.favorites,
                items.c.removed,
            )
            .join(items, items.c.user_id == records.c.user_id, isouter=True)
            .order_by(records.c.records.desc(), records.c.user_id)
            .limit(limit)
        )
    ).all()  # fmt: skip
    return [
        {"rank": n, "user_id": user, "records": int(count), "captured": int(captured or 0),
         "favorites": int(favorites or 0), "removed": int(removed or 0)}
        for n, (user, count, captured, favorites, removed) in enumerate(rows, start=1)
    ]  # fmt: skip
