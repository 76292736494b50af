"""Response model of GET /v1/usage: job costs summed per day, kind, provider or user."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from core.usage.store import GroupBy


class UsageGroup(BaseModel):
    key: str = Field(description="the day (YYYY-MM-DD, UTC), kind, provider or user id")
    cost_usd: float = Field(description="the sum of the group's known job costs")
    jobs: int = Field(description="succeeded jobs in the group")
    unpriced_jobs: int = Field(description="of them, jobs whose cost is unknown (not in cost_usd)")


class UsagePublic(BaseModel):
    group_by: GroupBy
    from_: date = Field(alias="from", description="first UTC day counted")
    to: date = Field(description="last UTC day counted (included)")
    user_id: str | None = Field(description="whose jobs; null: every user's (admins)")
    currency: str = "USD"
    cost_usd: float = Field(description="the total of every group")
    jobs: int
    unpriced_jobs: int
    groups: list[UsageGroup]
    daily_cap_usd: float | None = Field(
        None, description="MAX_DAILY_SPEND_PER_USER: new jobs are refused (402) once reached"
    )
