"""The API's Prometheus metrics (`GET /metrics`): one registry per app, three sources.

Where each figure comes from, so that it stays right with several API processes and separate
worker processes:

- **Counted in this API process** (webhooks received / verified / rejected per provider,
  signals sent, live-stream clients, event delivery lag): things only the API process sees.
  Every API process counts its own; Prometheus adds them up across instances (`sum by`).
- **Read from the database at scrape time** (jobs by kind and final status, job durations,
  polls, webhooks delivered to workflows, sync runs): the database is the one place every
  worker's results meet, so no process has to own a counter, a worker restart loses nothing
  and a retried activity counts nothing twice. Terminal states never change (status writes
  only move forward; a job the retention cleanup expired still counts as succeeded), so counts over the retained rows only grow and are exposed as true
  counters and histograms (`rate()` works); pruning rows would look like a counter reset.
  Every API process reports the same values: aggregate these with `max by`, not `sum by`.
  The query is one grouped scan of `jobs` and one of `sync_runs`, reused for
  `health_cache_seconds`.
- **The workers' own Temporal SDK metrics**: each worker serves them itself
  (`WORKER_METRICS_PORT`); this endpoint appends what `WORKER_METRICS_URLS` answer, each
  series labelled `worker_url`, so one scrape shows everything. A worker that does not answer
  is `autosync_worker_metrics_up{url=...} 0`, never an error. With several API processes,
  scrape the workers directly instead, or only one API, or their series repeat per instance.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.contracts import TERMINAL_JOB_STATUSES, TERMINAL_SYNC_STATUSES, JobStatus
from core.models import Job, SyncRun

if TYPE_CHECKING:
    from api.event_hub import EventHub

# Seconds from a job's creation to its end: seconds for an image, hours for a training.
JOB_DURATION_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
EVENT_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_TERMINAL_JOBS = [s.value for s in TERMINAL_JOB_STATUSES]
_TERMINAL_RUNS = [s.value for s in TERMINAL_SYNC_STATUSES]


@dataclass
class JobFigures:
    kind: str
    status: str
    count: int
    polls: int
    webhooks: int
    duration_sum: float
    buckets: list[int]  # cumulative, one per JOB_DURATION_BUCKETS bound, then +Inf


@dataclass
class StoreFigures:
    up: bool = False
    jobs: list[JobFigures] = field(default_factory=list)
    sync_runs: dict[str, int] = field(default_factory=dict)


async def read_store_figures(session: AsyncSession) -> StoreFigures:
    """Jobs and sync runs grouped by kind and status, with duration buckets of finished jobs."""
    if session.get_bind().dialect.name == "postgresql":
        duration: Any = extract("epoch", Job.completed_at - Job.created_at)
    else:  # SQLite keeps datetimes as text; julianday() reads them in days
        duration = (func.julianday(Job.completed_at) - func.julianday(Job.created_at)) * 86400.0
    finished = and_(Job.status.in_(_TERMINAL_JOBS), Job.completed_at.is_not(None))
    seconds = case((finished, duration), else_=None)
    # An expired job succeeded (retention deleted its outputs later): counted as succeeded,
    # so the counters keep only growing when the cleanup expires jobs.
    status = case(
        (Job.status == JobStatus.EXPIRED.value, JobStatus.SUCCEEDED.value), else_=Job.status
    )
    rows = (
        await session.execute(
            select(
                Job.kind,
                status,
                func.count(),
                func.coalesce(func.sum(Job.poll_count), 0),
                func.coalesce(func.sum(Job.webhook_count), 0),
                func.coalesce(func.sum(seconds), 0.0),
                *(
                    func.coalesce(func.sum(case((seconds <= bound, 1), else_=0)), 0)
                    for bound in JOB_DURATION_BUCKETS
                ),
                func.count(seconds),
            ).group_by(Job.kind, status)
        )
    ).all()
    runs = (
        await session.execute(select(SyncRun.status, func.count()).group_by(SyncRun.status))
    ).all()
    return StoreFigures(
        up=True,
        jobs=[
            JobFigures(
                kind=row[0],
                status=row[1],
                count=int(row[2]),
                polls=int(row[3]),
                webhooks=int(row[4]),
                duration_sum=float(row[5]),
                buckets=[int(n) for n in row[6:]],
            )
            for row in rows
        ],
        sync_runs={status: int(n) for status, n in runs},
    )


class StoreCollector(Collector):
    """Exposes the last `StoreFigures` read (the route refreshes them before each render)."""

    def __init__(self) -> None:
        self.figures = StoreFigures()

    def collect(self) -> Iterator[Metric]:
        figures = self.figures
        up = GaugeMetricFamily(
            "autosync_metrics_database_up", "Whether the database answered this scrape's queries"
        )
        up.add_metric([], 1 if figures.up else 0)
        yield up
        if not figures.up:
            return
        finished = CounterMetricFamily(
            "autosync_jobs_finished",
            "Jobs that ended, by kind and final status (from the database)",
            labels=["kind", "status"],
        )
        active = GaugeMetricFamily(
            "autosync_jobs_in_progress",
            "Unfinished jobs, by kind and current status (from the database)",
            labels=["kind", "status"],
        )
        durations = HistogramMetricFamily(
            "autosync_job_duration_seconds",
            "Seconds from a job's creation to its end, by kind and final status",
            labels=["kind", "status"],
        )
        polls = CounterMetricFamily(
            "autosync_job_polls",
            "Provider polls made by media-job workflows (the fallback when no webhook came)",
            labels=["kind"],
        )
        webhooks = CounterMetricFamily(
            "autosync_job_webhooks_delivered",
            "Provider webhooks that reached media-job workflows, as they counted them",
            labels=["kind"],
        )
        polls_by_kind: dict[str, int] = {}
        webhooks_by_kind: dict[str, int] = {}
        for jobs in figures.jobs:
            labels = [jobs.kind, jobs.status]
            polls_by_kind[jobs.kind] = polls_by_kind.get(jobs.kind, 0) + jobs.polls
            webhooks_by_kind[jobs.kind] = webhooks_by_kind.get(jobs.kind, 0) + jobs.webhooks
            if jobs.status not in _TERMINAL_JOBS:
                active.add_metric(labels, jobs.count)
                continue
            finished.add_metric(labels, jobs.count)
            bounds = [*(str(float(b)) for b in JOB_DURATION_BUCKETS), "+Inf"]
            durations.add_metric(
                labels,
                buckets=list(zip(bounds, jobs.buckets, strict=True)),
                sum_value=jobs.duration_sum,
            )
        for kind in sorted(polls_by_kind):
            polls.add_metric([kind], polls_by_kind[kind])
            webhooks.add_metric([kind], webhooks_by_kind[kind])
        runs_finished = CounterMetricFamily(
            "autosync_sync_runs_finished",
            "Sync runs that ended, by final status (from the database)",
            labels=["status"],
        )
        runs_active = GaugeMetricFamily(
            "autosync_sync_runs_in_progress",
            "Sync runs queued or running (from the database)",
            labels=["status"],
        )
        for status, n in sorted(figures.sync_runs.items()):
            (runs_finished if status in _TERMINAL_RUNS else runs_active).add_metric([status], n)
        yield from (finished, active, durations, polls, webhooks, runs_finished, runs_active)


class ApiMetrics:
    """This API process's metrics, in one registry (made in `create_app`, on `app.state`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        kw: dict[str, Any] = {"registry": self.registry}
        self.webhooks_received = Counter(
            "autosync_webhooks_received",
            "Webhook requests for a known provider",
            ["provider"],
            **kw,
        )
        self.webhooks_verified = Counter(
            "autosync_webhooks_verified", "Webhooks whose signature was valid", ["provider"], **kw
        )
        self.webhooks_rejected = Counter(
            "autosync_webhooks_rejected",
            "Webhooks refused for a bad signature or body (answered 401)",
            ["provider"],
            **kw,
        )
        self.signals = Counter(
            "autosync_signals",
            "Signals this API sent to workflows; outcome sent or failed",
            ["workflow", "signal", "outcome"],
            **kw,
        )
        self.event_lag = Histogram(
            "autosync_event_delivery_lag_seconds",
            "Seconds from an event's write to its dispatch to this process's live streams",
            buckets=EVENT_LAG_BUCKETS,
            **kw,
        )
        self.live_clients = Gauge(
            "autosync_live_clients", "Live-stream clients (SSE and WebSocket) connected", **kw
        )
        self.store = StoreCollector()
        self.registry.register(self.store)
        self._store_lock = asyncio.Lock()
        self._store_at = float("-inf")
        self._hub: EventHub | None = None

    def watch(self, hub: EventHub) -> None:
        """Observe the event hub's delivery lag and clients."""
        self._hub = hub
        hub.lag_observer = self.event_lag.observe

    def signal(self, workflow: str, signal: str, *, sent: bool) -> None:
        self.signals.labels(workflow, signal, "sent" if sent else "failed").inc()

    async def refresh_store(
        self, sessions: async_sessionmaker[AsyncSession], max_age: float, wait_seconds: float
    ) -> None:
        loop = asyncio.get_running_loop()
        async with self._store_lock:
            if loop.time() - self._store_at < max_age:
                return
            try:
                async with sessions() as session:
                    figures = await asyncio.wait_for(read_store_figures(session), wait_seconds)
            except Exception:
                figures = StoreFigures(up=False)
            self.store.figures = figures
            self._store_at = loop.time()

    async def render(
        self,
        sessions: async_sessionmaker[AsyncSession] | None,
        *,
        worker_urls: list[str],
        cache_seconds: float,
        wait_seconds: float,
    ) -> bytes:
        """This process's metrics, the database's figures, then the workers' metrics."""
        self.live_clients.set(self._hub.clients if self._hub is not None else 0)
        if sessions is not None:
            await self.refresh_store(sessions, cache_seconds, wait_seconds)
        own = generate_latest(self.registry)
        if not worker_urls:
            return own
        return own + (await worker_metrics(worker_urls, wait_seconds)).encode()


# --- the workers' metrics -------------------------------------------------------------------

_SAMPLE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?\s+\S+(\s+-?\d+)?$")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def _labelled(line: str, label: str) -> str:
    """`name{a="b"} 1` -> `name{<label>,a="b"} 1`; `name 1` -> `name{<label>} 1`."""
    brace, space = line.find("{"), line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        rest = line[brace + 1 :]
        return f"{line[: brace + 1]}{label}{'' if rest.startswith('}') else ','}{rest}"
    return f"{line[:space]}{{{label}}}{line[space:]}"


@dataclass
class _Family:
    help: str | None = None
    type: str | None = None
    samples: list[str] = field(default_factory=list)


def merge_expositions(bodies: list[tuple[str, str]]) -> str:
    """Several Prometheus text bodies as one: each family once, each sample labelled with its
    source (`worker_url`), so two workers' identical series stay distinct.

    Raises ValueError for a body that is not the Prometheus text format.
    """
    families: dict[str, _Family] = {}
    for url, body in bodies:
        label = f'worker_url="{_escape(url)}"'
        current: str | None = None
        for line in body.splitlines():
            line = line.strip()
            if not line:
                continue
            if line.startswith(("# HELP ", "# TYPE ")):
                parts = line.split(" ", 3)
                if len(parts) < 4:
                    raise ValueError(f"bad metadata line from {url}: {line[:80]!r}")
                current = parts[2]
                family = families.setdefault(current, _Family())
                if parts[1] == "HELP":
                    family.help = family.help or line
                else:
                    family.type = family.type or line
                continue
            if line.startswith("#"):
                continue
            if not _SAMPLE.match(line):
                raise ValueError(f"not a Prometheus sample from {url}: {line[:80]!r}")
            name = re.split(r"[{\s]", line, maxsplit=1)[0]
            owner = current if current is not None and name.startswith(current) else name
            families.setdefault(owner, _Family()).samples.append(_labelled(line, label))
    out: list[str] = []
    for family in families.values():
        out += [x for x in (family.help, family.type) if x is not None]
        out += family.samples
    return "\n".join(out) + "\n" if out else ""


async def worker_metrics(urls: list[str], wait_seconds: float) -> str:
    """The workers' metrics merged, then `autosync_worker_metrics_up` for every URL."""

    async def fetch(http: httpx.AsyncClient, url: str) -> str | None:
        try:
            response = await http.get(url)
            response.raise_for_status()
            merge_expositions([(url, response.text)])  # validate before trusting it
            return response.text
        except (httpx.HTTPError, ValueError):
            return None

    async with httpx.AsyncClient(timeout=httpx.Timeout(wait_seconds)) as http:
        answers = await asyncio.gather(*(fetch(http, url) for url in urls))
    merged = merge_expositions([(u, body) for u, body in zip(urls, answers, strict=True) if body])
    up = [
        "# HELP autosync_worker_metrics_up Whether a worker's metrics URL answered this scrape",
        "# TYPE autosync_worker_metrics_up gauge",
        *(
            f'autosync_worker_metrics_up{{url="{_escape(url)}"}} {1 if body else 0}'
            for url, body in zip(urls, answers, strict=True)
        ),
    ]
    return merged + "\n".join(up) + "\n"
