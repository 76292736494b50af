"""The events outbox: every recorded state change, appended in the transaction that makes it.

Topics name who may read an event: `user:{id}` (a user's jobs), `project:{id}` (a project's
nodes), `sync-run:{id}` (a sync run, admins only) and `batch:{id}` (a bulk action on jobs, its
requester and admins). Types say what happened: `job.{status}`, `project.node_updated`,
`sync_run.{status}`, `sync_run.module`, `sync_run.log`, `batch.{status}`, `batch.progress`. The API streams them (`/v1/events`, `/v1/ws`); a client that reconnects asks
for everything after the last id it saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Event, Job, SyncRun, utcnow

# PostgreSQL: NOTIFY channel that wakes the API processes, and the transaction lock that
# makes event ids commit in order (two writers can't interleave id order and commit order).
NOTIFY_CHANNEL = "autosync_events"
_ORDER_LOCK = 0x6175746F  # "auto"

# A sync run's topic (`core.contracts.SYNC_RUN_WORKFLOW_PREFIX` names its workflow).
SYNC_RUN_TOPIC_PREFIX = "sync-run:"
# A batch's topic (a bulk cancel or rerun of jobs, `core.jobs.bulk`).
BATCH_TOPIC_PREFIX = "batch:"


def user_topic(user_id: str) -> str:
    return f"user:{user_id}"


def project_topic(project_id: str) -> str:
    return f"project:{project_id}"


def sync_run_topic(run_id: str) -> str:
    return f"{SYNC_RUN_TOPIC_PREFIX}{run_id}"


def batch_topic(batch_id: str) -> str:
    return f"{BATCH_TOPIC_PREFIX}{batch_id}"


async def append_event(
    session: AsyncSession, topic: str, type_: str, payload: dict[str, Any]
) -> int:
    """Append one event to the session's transaction; returns its id. The caller commits.

    On PostgreSQL the transaction then holds the events lock until it ends: append events
    last, just before committing.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ORDER_LOCK})
    event_id: int = (
        await session.execute(
            insert(Event)
            .values(topic=topic, type=type_, payload=payload, created_at=utcnow())
            .returning(Event.id)
        )
    ).scalar_one()
    if postgres:  # delivered when the transaction commits, never before
        await session.execute(
            text("SELECT pg_notify(:channel, :id)"),
            {"channel": NOTIFY_CHANNEL, "id": str(event_id)},
        )
    return event_id


async def append_events(
    session: AsyncSession, topic: str, events: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Append several `(type, payload)` events of one topic in one statement; the caller
    commits. As `append_event`: on PostgreSQL the transaction holds the events lock until it
    ends (one NOTIFY wakes the listeners for all of them)."""
    if not events:
        return
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ORDER_LOCK})
    now = utcnow()
    await session.execute(
        insert(cast(Table, Event.__table__)),
        [{"topic": topic, "type": type_, "payload": payload, "created_at": now}
         for type_, payload in events],
    )  # fmt: skip
    if postgres:
        await session.execute(
            text("SELECT pg_notify(:channel, :id)"), {"channel": NOTIFY_CHANNEL, "id": "batch"}
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_payload(job: Job) -> dict[str, Any]:
    """What a job's event carries: enough to draw it in a queue or a gallery."""
    return {
        "id": job.id,
        "user_id": job.user_id,
        "kind": job.kind,
        "provider": job.provider,
        "model": job.model,
        "status": job.status,
        "provider_status": job.provider_status,
        "project_id": job.project_id,
        "node_id": job.node_id,
        "error": job.error,
        "outputs": job.outputs,
        "recovery_state": job.recovery_state,
        "recovery_reason": job.recovery_reason,
        "rerun_of": job.rerun_of,
        "cost_usd": job.cost_usd,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "completed_at": _iso(job.completed_at),
    }


def sync_run_payload(run: SyncRun) -> dict[str, Any]:
    """What a sync run's status event carries (module progress comes as its own events)."""
    return {
        "run_id": run.id,
        "company_id": run.company_id,
        "mode": run.mode,
        "status": run.status,
        "current_module": run.current_module,
        "error_message": run.error_message,
        "triggered_by": run.triggered_by,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }


async def append_run_status(session: AsyncSession, run: SyncRun) -> None:
    """`sync_run.{status}` for the run as it stands in the session (flushed first)."""
    await session.flush()
    await append_event(
        session, sync_run_topic(run.id), f"sync_run.{run.status.lower()}", sync_run_payload(run)
    )


async def prune_events(session: AsyncSession, older_than: timedelta) -> int:
    """Delete events older than `older_than`; returns how many. The caller commits."""
    result = await session.execute(delete(Event).where(Event.created_at < utcnow() - older_than))
    return int(getattr(result, "rowcount", 0) or 0)
