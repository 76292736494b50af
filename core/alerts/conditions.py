"""What counts as an incident, read from the app DB (and, for storage, a probe of it).

Each finding names its kind and subject; `core.alerts.incidents` turns findings into incidents
recorded once. Definitions:

- failure rate: per provider, among the jobs that ended (succeeded or failed) in the last
  ALERT_WINDOW_MINUTES, at least ALERT_MIN_JOBS, the failed share is ALERT_FAILURE_RATE or more;
- stuck jobs: per kind, unfinished jobs past their kind's deadline (`core.jobs.deadlines`, as
  `GET /v1/health` counts them);
- sync failed: a run that ended FAILED in the last ALERT_LOOKBACK_HOURS (one incident per run);
- sync overrun: a run QUEUED or RUNNING longer than ALERT_SYNC_MAX_MINUTES since it started
  (created, if it never started);
- pull client inactive: a client made inactive (too many failed pulls) in the lookback: one
  incident per time it went inactive;
- storage error: writing, reading back or deleting a small probe object failed.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.alerts.contracts import AlertKind
from core.contracts import JobStatus, SyncStatus
from core.jobs.deadlines import stuck
from core.models import Job, SyncRun
from core.pull_models import PullClient
from core.settings import Settings

PROBE_KEY = "alerts-probe/probe.txt"
PROBE_TIMEOUT_SECONDS = 30.0


@dataclass
class Finding:
    kind: AlertKind
    subject: str  # what it is about: a provider, a kind, a run id, a client id, a backend
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)
    # For one-off incidents, what makes this one itself (a run id; a client's inactive_since).
    occurrence: str = ""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def failure_rates(session: AsyncSession, settings: Settings, now: datetime) -> list[Finding]:
    since = now - timedelta(minutes=settings.alert_window_minutes)
    failed = func.sum(case((Job.status == JobStatus.FAILED.value, 1), else_=0))
    rows = (
        await session.execute(
            select(Job.provider, func.count(), failed)
            .where(
                Job.completed_at >= since,
                Job.status.in_([JobStatus.SUCCEEDED.value, JobStatus.FAILED.value]),
            )
            .group_by(Job.provider)
        )
    ).all()
    found: list[Finding] = []
    for provider, total, failures in rows:
        total, failures = int(total), int(failures or 0)
        if total < settings.alert_min_jobs or failures / total < settings.alert_failure_rate:
            continue
        found.append(
            Finding(
                AlertKind.FAILURE_RATE,
                provider,
                f"{failures} of the last {total} {provider} jobs failed "
                f"(in {settings.alert_window_minutes:g} minutes; "
                f"threshold {settings.alert_failure_rate:.0%})",
                {
                    "provider": provider,
                    "failed": failures,
                    "ended": total,
                    "window_minutes": settings.alert_window_minutes,
                    "threshold": settings.alert_failure_rate,
                },
            )
        )
    return found


async def stuck_jobs(session: AsyncSession, settings: Settings, now: datetime) -> list[Finding]:
    rows = (
        await session.execute(
            select(Job.kind, func.count(), func.min(Job.created_at))
            .where(stuck(settings, now))
            .group_by(Job.kind)
        )
    ).all()
    return [
        Finding(
            AlertKind.STUCK_JOBS,
            kind,
            f"{int(n)} {kind} job{'s' if int(n) != 1 else ''} unfinished past the "
            f"{settings.job_deadline(kind)}-minute deadline",
            {
                "kind": kind,
                "count": int(n),
                "deadline_minutes": settings.job_deadline(kind),
                "oldest_created_at": _iso(oldest),
            },
        )
        for kind, n, oldest in rows
    ]


async def sync_runs(session: AsyncSession, settings: Settings, now: datetime) -> list[Finding]:
    since = now - timedelta(hours=settings.alert_lookback_hours)
    failed = (
        (
            await session.execute(
                select(SyncRun).where(
                    SyncRun.status == SyncStatus.FAILED.value, SyncRun.finished_at >= since
                )
            )
        )
        .scalars()
        .all()
    )
    limit = now - timedelta(minutes=settings.alert_sync_max_minutes)
    began = func.coalesce(SyncRun.started_at, SyncRun.created_at)
    overrun = (
        (
            await session.execute(
                select(SyncRun).where(
                    SyncRun.status.in_([SyncStatus.QUEUED.value, SyncStatus.RUNNING.value]),
                    began < limit,
                )
            )
        )
        .scalars()
        .all()
    )
    found = [
        Finding(
            AlertKind.SYNC_FAILED,
            run.company_id,
            f"sync run {run.id} of {run.company_id} failed: {run.error_message or 'no reason'}",
            {
                "run_id": run.id,
                "company_id": run.company_id,
                "mode": run.mode,
                "error": run.error_message,
                "finished_at": _iso(run.finished_at),
            },
            occurrence=run.id,
        )
        for run in failed
    ]
    found += [
        Finding(
            AlertKind.SYNC_OVERRUN,
            run.company_id,
            f"sync run {run.id} of {run.company_id} is still {run.status.lower()} after more "
            f"than {settings.alert_sync_max_minutes:g} minutes",
            {
                "run_id": run.id,
                "company_id": run.company_id,
                "status": run.status,
                "started_at": _iso(run.started_at),
                "created_at": _iso(run.created_at),
                "current_module": run.current_module,
            },
            occurrence=run.id,
        )
        for run in overrun
    ]
    return found


async def inactive_clients(
    session: AsyncSession, settings: Settings, now: datetime
) -> list[Finding]:
    since = now - timedelta(hours=settings.alert_lookback_hours)
    clients = (
        (
            await session.execute(
                select(PullClient).where(
                    PullClient.active.is_(False), PullClient.inactive_since >= since
                )
            )
        )
        .scalars()
        .all()
    )
    found: list[Finding] = []
    for client in clients:
        assert client.inactive_since is not None
        found.append(
            Finding(
                AlertKind.PULL_CLIENT_INACTIVE,
                client.id,
                f"pull client {client.id} ({client.url}) went inactive after "
                f"{client.consecutive_failures} failed pulls: {client.last_error or 'no reason'}",
                {
                    "client_id": client.id,
                    "url": client.url,
                    "user_id": client.user_id,
                    "consecutive_failures": client.consecutive_failures,
                    "last_error": client.last_error,
                    "inactive_since": _iso(client.inactive_since),
                },
                occurrence=client.inactive_since.strftime("%Y%m%dT%H%M%S%fZ"),
            )
        )
    return found


async def find(session: AsyncSession, settings: Settings, now: datetime) -> list[Finding]:
    """Every database condition that is an incident now."""
    return [
        *await failure_rates(session, settings, now),
        *await stuck_jobs(session, settings, now),
        *await sync_runs(session, settings, now),
        *await inactive_clients(session, settings, now),
    ]


class ProbedStorage(Protocol):
    name: str

    async def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...


async def probe_storage(storage: ProbedStorage) -> Finding | None:
    """Write, check and delete a small object; a finding when any step fails."""

    async def probe() -> None:
        with tempfile.TemporaryDirectory(prefix="autosync-probe-") as folder:
            path = Path(folder) / "probe.txt"
            path.write_bytes(b"autosync storage probe\n")
            await storage.put_file(PROBE_KEY, path, "text/plain")
        if not await storage.exists(PROBE_KEY):
            raise RuntimeError("the probe object written is not there")
        await storage.delete(PROBE_KEY)

    try:
        await asyncio.wait_for(probe(), PROBE_TIMEOUT_SECONDS)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        return Finding(
            AlertKind.STORAGE_ERROR,
            storage.name,
            f"{storage.name} storage failed its probe: {reason}",
            {"backend": storage.name, "error": reason},
        )
    return None
