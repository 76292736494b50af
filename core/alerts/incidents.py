"""Findings become incidents recorded once, under a key that names them.

- One-off kinds (a failed or overrunning sync run, a client gone inactive): the key is
  `{kind}:{subject}:{occurrence}`; finding it again at the next sweep changes nothing.
- Recurring kinds (failure rate, stuck jobs, storage errors): while a condition holds its one
  open incident stays open (no new alert); when a sweep no longer finds it, it is resolved; if
  it comes back, that is a new incident, keyed by when it opened.

The sweep then lists what is still owed: incidents opened within ALERT_LOOKBACK_HOURS lacking
a recorded delivery to a configured target. Their delivery workflow's id is derived from the
key, so an incident still being delivered is not sent again by a second workflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.alerts.conditions import Finding
from core.alerts.contracts import RECURRING_KINDS, AlertSweepResult, AlertToSend
from core.models import AlertDelivery, AlertIncident


def _key(finding: Finding, now: datetime) -> str:
    if finding.kind in RECURRING_KINDS:
        return f"{finding.kind}:{finding.subject}:{now.strftime('%Y%m%dT%H%M%S%fZ')}"
    return f"{finding.kind}:{finding.subject}:{finding.occurrence}"


async def record(
    session: AsyncSession,
    findings: Sequence[Finding],
    now: datetime,
    *,
    targets: Sequence[str],
    lookback: timedelta,
) -> AlertSweepResult:
    """Record new incidents and resolve cleared ones (the caller commits); what is owed."""
    result = AlertSweepResult()
    recurring = [k.value for k in RECURRING_KINDS]
    open_rows = (
        (
            await session.execute(
                select(AlertIncident).where(
                    AlertIncident.kind.in_(recurring), AlertIncident.resolved_at.is_(None)
                )
            )
        )
        .scalars()
        .all()
    )
    open_by_condition = {(row.kind, row.subject): row for row in open_rows}
    held = {(f.kind.value, f.subject) for f in findings if f.kind in RECURRING_KINDS}
    for condition, row in sorted(open_by_condition.items()):
        if condition not in held:
            row.resolved_at = now
            result.resolved.append(row.key)
    one_off = [_key(f, now) for f in findings if f.kind not in RECURRING_KINDS]
    known = set(
        (
            await session.execute(select(AlertIncident.key).where(AlertIncident.key.in_(one_off)))
        ).scalars()
    )
    for finding in findings:
        if finding.kind in RECURRING_KINDS:
            if (finding.kind.value, finding.subject) in open_by_condition:
                continue
        key = _key(finding, now)
        if key in known:
            continue
        known.add(key)
        session.add(
            AlertIncident(
                key=key,
                kind=finding.kind.value,
                subject=finding.subject[:160],
                summary=finding.summary,
                detail=finding.detail,
                opened_at=now,
            )
        )
        result.opened.append(key)
    await session.flush()
    if targets:
        result.to_send = await owed(session, now - lookback, targets)
    return result


async def owed(session: AsyncSession, since: datetime, targets: Sequence[str]) -> list[AlertToSend]:
    """Incidents opened since `since` that some target has not had yet, oldest first."""
    incidents = (
        await session.execute(
            select(AlertIncident.key, AlertIncident.summary)
            .where(AlertIncident.opened_at >= since)
            .order_by(AlertIncident.opened_at, AlertIncident.key)
        )
    ).all()
    if not incidents:
        return []
    delivered: dict[str, set[str]] = {}
    rows = await session.execute(
        select(AlertDelivery.incident_key, AlertDelivery.target).where(
            AlertDelivery.incident_key.in_([key for key, _ in incidents])
        )
    )
    for key, target in rows:
        delivered.setdefault(key, set()).add(target)
    found: list[AlertToSend] = []
    for key, summary in incidents:
        missing = [t for t in targets if t not in delivered.get(key, set())]
        if missing:
            found.append(AlertToSend(incident_key=key, summary=summary, targets=missing))
    return found
