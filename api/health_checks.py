"""What `GET /v1/health` looks at, and how the answers become healthy / degraded / critical.

`observe()` asks Temporal and the database (each with a short timeout, run side by side);
`classify()` is a pure function from those observations to the status, the reasons and the
per-check details, so the thresholds are tested without any running part. The overall status
is the worst of the checks; a check that could not be made (the database is down, so its
error count is unknown) is `unknown` and counts for nothing: its cause already is critical.

Definitions that are easy to get wrong:
- *Workers polling*: the server lists each poller of a task queue with the time its current
  long poll began. An idle worker renews its poll about once a minute, so a poller counts as
  alive when seen within `health_poller_window_seconds` (90 s), not 60. A worker that stopped
  therefore still counts for up to that long.
- *Finished by polling*: the media workflow counts the webhooks it received and the polls it
  made, and writes both counts with the job's terminal status (as they were when it acted on
  the provider's final state: `store_outputs` gets them when storing begins). A job that
  succeeded or failed in the last hour with `poll_count > 0` and `webhook_count == 0` learned
  its outcome by polling: no webhook reached it at all. Jobs with neither (failed before the
  provider had them) and canceled jobs are left out. When providers also send `start`
  webhooks, a job whose `start` webhook arrived but whose `completed` one was lost counts as
  a webhook job: the share is a lower bound of lost completion webhooks.
- *Recent errors*: jobs that ended `failed` plus sync runs that ended `FAILED`, in the last hour.
- *Stuck jobs*: unfinished jobs created longer ago than their kind's deadline
  (`job_deadline_minutes`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, case, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from core.contracts import JobStatus, SyncStatus
from core.jobs.deadlines import stuck as stuck_jobs
from core.models import Job, SyncRun
from core.settings import Settings

Status = Literal["healthy", "degraded", "critical"]
CheckStatus = Literal["ok", "degraded", "critical", "unknown"]

_RANK: dict[str, int] = {"unknown": 0, "ok": 0, "degraded": 1, "critical": 2}
_OVERALL: dict[int, Status] = {0: "healthy", 1: "degraded", 2: "critical"}

WINDOW = timedelta(hours=1)  # recent errors and finished jobs


@dataclass(frozen=True)
class Thresholds:
    errors_degraded: int = 3  # recent errors from this many: degraded
    errors_critical: int = 10  # more than this many: critical
    polling_share: float = 0.5  # finished by polling above this share ...
    polling_min_jobs: int = 5  # ... of at least this many jobs: degraded
    stuck_critical: int = 10  # more stuck jobs than this: critical


@dataclass(frozen=True)
class QueuePollers:
    """Live pollers of one task queue, per task type (None: that type is not served there)."""

    queue: str
    role: str  # what it carries, for the reasons: "media jobs", "sync runs", ...
    workflow_pollers: int | None
    activity_pollers: int | None
    required: bool  # nobody polling is critical (else degraded)


@dataclass(frozen=True)
class Observations:
    temporal_error: str | None = None  # None: Temporal answered
    queues: list[QueuePollers] | None = None  # None: could not be asked
    database_error: str | None = None  # None: the database answered
    failed_jobs: int | None = None
    failed_sync_runs: int | None = None
    finished_jobs: int | None = None  # succeeded or failed in the window, watched by either way
    finished_by_polling: int | None = None
    live_clients: int | None = None  # None: this app has no live-event hub
    stuck_jobs: dict[str, int] | None = None  # kind -> jobs past their deadline

    def with_live_clients(self, clients: int | None) -> Observations:
        return replace(self, live_clients=clients)


@dataclass
class HealthReport:
    status: Status
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "reasons": self.reasons, "checks": self.checks}


def classify(obs: Observations, limits: Thresholds = Thresholds()) -> HealthReport:
    """The overall status (the worst check), the reasons for it and every check's details."""
    checks: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []

    def check(name: str, status: CheckStatus, reason: str | None = None, **details: Any) -> None:
        checks[name] = {"status": status, **details}
        if reason and status in ("degraded", "critical"):
            reasons.append(reason)

    if obs.temporal_error is None:
        check("temporal", "ok")
    else:
        check(
            "temporal",
            "critical",
            f"Temporal is unreachable ({obs.temporal_error}): no job or sync run can move",
            error=obs.temporal_error,
        )

    if obs.queues is None:
        check("workers", "unknown")
    else:
        worst: CheckStatus = "ok"
        queues: dict[str, dict[str, int]] = {}
        for q in obs.queues:
            counts = {
                "workflow_pollers": q.workflow_pollers,
                "activity_pollers": q.activity_pollers,
            }
            queues[q.queue] = {k: v for k, v in counts.items() if v is not None}
            idle = [k.split("_")[0] for k, v in counts.items() if v == 0]
            if not idle:
                continue
            level: CheckStatus = "critical" if q.required else "degraded"
            worst = level if _RANK[level] > _RANK[worst] else worst
            reasons.append(
                f"no worker is polling task queue {q.queue!r} ({' and '.join(idle)} tasks):"
                f" {q.role} are not progressing"
            )
        checks["workers"] = {"status": worst, "queues": queues}

    if obs.database_error is None:
        check("database", "ok")
    else:
        check(
            "database",
            "critical",
            f"the database is unreachable ({obs.database_error})",
            error=obs.database_error,
        )

    if obs.failed_jobs is None or obs.failed_sync_runs is None:
        check("recent_errors", "unknown")
    else:
        errors = obs.failed_jobs + obs.failed_sync_runs
        level = (
            "critical"
            if errors > limits.errors_critical
            else "degraded"
            if errors >= limits.errors_degraded
            else "ok"
        )
        check(
            "recent_errors",
            level,
            f"{errors} errors in the last hour ({obs.failed_jobs} failed jobs,"
            f" {obs.failed_sync_runs} failed sync runs)",
            count=errors,
            failed_jobs=obs.failed_jobs,
            failed_sync_runs=obs.failed_sync_runs,
            window_minutes=int(WINDOW.total_seconds() // 60),
        )

    if obs.finished_jobs is None or obs.finished_by_polling is None:
        check("webhooks", "unknown")
    else:
        share = obs.finished_by_polling / obs.finished_jobs if obs.finished_jobs else 0.0
        level = (
            "degraded"
            if obs.finished_jobs >= limits.polling_min_jobs and share > limits.polling_share
            else "ok"
        )
        check(
            "webhooks",
            level,
            f"{obs.finished_by_polling} of {obs.finished_jobs} jobs finished in the last hour"
            " learned their outcome by polling: webhooks may be failing",
            finished_jobs=obs.finished_jobs,
            finished_by_polling=obs.finished_by_polling,
            polling_share=round(share, 3),
        )

    # No open dashboard is not a fault of the service: the count is information only.
    check(
        "live_streams",
        "ok" if obs.live_clients is not None else "unknown",
        clients=obs.live_clients,
    )

    if obs.stuck_jobs is None:
        check("stuck_jobs", "unknown")
    else:
        stuck = sum(obs.stuck_jobs.values())
        level = "critical" if stuck > limits.stuck_critical else "degraded" if stuck else "ok"
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(obs.stuck_jobs.items()) if n)
        check(
            "stuck_jobs",
            level,
            f"{stuck} unfinished jobs are past their deadline ({kinds})",
            count=stuck,
            by_kind={kind: n for kind, n in sorted(obs.stuck_jobs.items()) if n},
        )

    worst_rank = max((_RANK[c["status"]] for c in checks.values()), default=0)
    return HealthReport(status=_OVERALL[worst_rank], reasons=reasons, checks=checks)


# --- observing -------------------------------------------------------------------------------


def _failure(exc: BaseException) -> str:
    """An error's kind only: messages may carry connection strings."""
    return exc.__class__.__name__


async def observe(
    settings: Settings,
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    now: datetime | None = None,
) -> Observations:
    """Ask Temporal and the database at once (the live-client count is the caller's)."""
    now = now or datetime.now(UTC)
    temporal, database = await asyncio.gather(
        _observe_temporal(settings, client, now), observe_database(settings, sessions, now)
    )
    return Observations(**temporal, **database)


async def _observe_temporal(settings: Settings, client: Client, now: datetime) -> dict[str, Any]:
    timeout = settings.health_timeout_seconds
    try:
        serving = await asyncio.wait_for(
            client.service_client.check_health(timeout=timedelta(seconds=timeout)), timeout
        )
    except Exception as exc:
        return {"temporal_error": _failure(exc)}
    if not serving:
        return {"temporal_error": "not serving"}
    wf, act = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    wanted: list[tuple[str, str, bool, list[TaskQueueType.ValueType]]] = [
        (settings.media_task_queue, "media jobs", True, [wf, act]),
        (settings.storage_task_queue, "media jobs' output copies", True, [act]),
        (settings.sync_task_queue, "sync runs", True, [wf, act]),
        (settings.erp_task_queue, "sync runs' page fetches", False, [act]),
        (settings.pull_sync_task_queue, "pull-sync of registered clients", False, [wf, act]),
    ]
    if settings.provider_pollers:
        # Without them a job whose webhook was lost waits for its own, stretched, timer.
        wanted.append(
            (settings.poller_task_queue, "provider pollers (the poll fallback)", False, [wf, act])
        )
    since = now - timedelta(seconds=settings.health_poller_window_seconds)

    async def live_pollers(queue: str, task_type: TaskQueueType.ValueType) -> int:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
                task_queue_type=task_type,
            ),
            timeout=timedelta(seconds=timeout),
        )
        return sum(1 for p in response.pollers if p.last_access_time.ToDatetime(UTC) >= since)

    try:
        counts = await asyncio.wait_for(
            asyncio.gather(*(live_pollers(q, t) for q, _, _, types in wanted for t in types)),
            timeout,
        )
    except Exception as exc:
        return {"temporal_error": f"describing task queues failed: {_failure(exc)}"}
    found = iter(counts)
    queues = []
    for queue, role, required, types in wanted:
        per_type = {t: next(found) for t in types}
        queues.append(
            QueuePollers(
                queue=queue,
                role=role,
                workflow_pollers=per_type.get(wf),
                activity_pollers=per_type.get(act),
                required=required,
            )
        )
    return {"queues": queues}


async def observe_database(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], now: datetime
) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(
            _database_figures(settings, sessions, now), settings.health_timeout_seconds
        )
    except Exception as exc:
        return {"database_error": _failure(exc)}


async def _database_figures(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], now: datetime
) -> dict[str, Any]:
    since = now - WINDOW
    ended = [JobStatus.SUCCEEDED.value, JobStatus.FAILED.value]
    watched = or_(Job.webhook_count > 0, Job.poll_count > 0)
    by_polling = and_(Job.webhook_count == 0, Job.poll_count > 0)

    def count_if(*conditions: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)

    recent = select(
        count_if(Job.status == JobStatus.FAILED.value),
        count_if(Job.status.in_(ended), watched),
        count_if(Job.status.in_(ended), by_polling),
    ).where(Job.completed_at >= since)
    failed_runs = (
        select(func.count())
        .select_from(SyncRun)
        .where(SyncRun.status == SyncStatus.FAILED.value, SyncRun.finished_at >= since)
    )
    stuck = select(Job.kind, func.count()).where(stuck_jobs(settings, now)).group_by(Job.kind)
    async with sessions() as session:
        await session.execute(text("SELECT 1"))
        failed_jobs, finished, polled = (await session.execute(recent)).one()
        failed_sync_runs = await session.scalar(failed_runs)
        stuck_by_kind = {kind: int(n) for kind, n in (await session.execute(stuck)).all()}
    return {
        "failed_jobs": int(failed_jobs or 0),
        "failed_sync_runs": int(failed_sync_runs or 0),
        "finished_jobs": int(finished or 0),
        "finished_by_polling": int(polled or 0),
        "stuck_jobs": stuck_by_kind,
    }


class HealthMonitor:
    """Observations reused for `health_cache_seconds`; concurrent callers share one refresh."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = asyncio.Lock()
        self._at = float("-inf")
        self._last: Observations | None = None

    async def observations(
        self, client: Client, sessions: async_sessionmaker[AsyncSession]
    ) -> Observations:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if self._last is None or loop.time() - self._at >= self._settings.health_cache_seconds:
                self._last = await observe(self._settings, client, sessions)
                self._at = loop.time()
            return self._last
