"""When an unfinished job counts as stuck: older than its kind's deadline (JOB_DEADLINE_MINUTES).

One definition for `GET /v1/health` and the stuck-jobs alert.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_
from sqlalchemy.sql.elements import ColumnElement

from core.contracts import TERMINAL_JOB_STATUSES
from core.models import Job
from core.settings import DEFAULT_JOB_DEADLINE_MINUTES, Settings


def past_deadline(settings: Settings, now: datetime) -> ColumnElement[bool]:
    """Jobs created longer ago than their kind's deadline (whatever their status)."""
    kinds = sorted(set(settings.job_deadline_minutes) | set(DEFAULT_JOB_DEADLINE_MINUTES))
    return or_(
        *(
            and_(
                Job.kind == kind,
                Job.created_at < now - timedelta(minutes=settings.job_deadline(kind)),
            )
            for kind in kinds
        ),
        and_(
            Job.kind.not_in(kinds),
            Job.created_at < now - timedelta(minutes=settings.job_deadline("")),
        ),
    )


def stuck(settings: Settings, now: datetime) -> ColumnElement[bool]:
    """Unfinished jobs past their kind's deadline."""
    return and_(
        Job.status.not_in([s.value for s in TERMINAL_JOB_STATUSES]), past_deadline(settings, now)
    )
