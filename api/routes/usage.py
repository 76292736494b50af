"""What jobs cost: sums per day, kind, provider or user (`core.usage`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import CurrentCaller, SessionDep, SettingsDep
from api.schemas.usage import UsageGroup, UsagePublic
from core.usage.costs import USD_DIGITS
from core.usage.store import GroupBy, usage

router = APIRouter(prefix="/v1", tags=["usage"])

# Longest range one request sums (days, both ends included), and the default one.
MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 30
WHOSE = "whose jobs: your own; an admin's choice of user, or every user's when left out"


@router.get("/usage", response_model=UsagePublic, response_model_by_alias=True)
async def read_usage(
    caller: CurrentCaller,
    session: SessionDep,
    settings: SettingsDep,
    group_by: Annotated[GroupBy, Query(description="sum per day, kind, provider or user")] = (
        GroupBy.DAY
    ),
    from_: Annotated[
        date | None, Query(alias="from", description="first UTC day (default: 30 days ago)")
    ] = None,
    to: Annotated[date | None, Query(description="last UTC day, included (default: today)")] = None,
    user_id: Annotated[str | None, Query(max_length=64, description=WHOSE)] = None,
) -> UsagePublic:
    """What your succeeded jobs cost, summed per group, by the UTC day they completed."""
    last = to or datetime.now(UTC).date()
    if last >= date.max:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"to: must be before {date.max.isoformat()}"
        )
    back = min(DEFAULT_RANGE_DAYS - 1, (last - date.min).days)  # no earlier than year 1
    first = from_ or last - timedelta(days=back)
    if first > last:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"from: {first.isoformat()} is after to ({last.isoformat()})",
        )
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"from/to: at most {MAX_RANGE_DAYS} days at once "
            f"({first.isoformat()} to {last.isoformat()} is {(last - first).days + 1})",
        )
    if caller.is_admin:
        whose = user_id
    elif user_id is None or user_id == caller.user_id:
        whose = caller.user_id
    else:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "user_id: only admins see others' usage")
    rows = await usage(session, user_id=whose, first=first, last=last, group_by=group_by)
    return UsagePublic.model_validate(
        {
            "group_by": group_by,
            "from": first,
            "to": last,
            "user_id": whose,
            "cost_usd": round(sum(r.usd for r in rows), USD_DIGITS),
            "jobs": sum(r.jobs for r in rows),
            "unpriced_jobs": sum(r.unpriced for r in rows),
            "groups": [
                UsageGroup(key=r.key, cost_usd=r.usd, jobs=r.jobs, unpriced_jobs=r.unpriced)
                for r in rows
            ],
            "daily_cap_usd": settings.max_daily_spend_per_user,
        }
    )
