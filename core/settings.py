"""Settings shared by the API, the worker and the stack runner, read from the environment.

Every variable is documented in `.env.example`; defaults are the embedded one-command stack.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# How long a job may stay unfinished before /v1/health counts it as stuck, per kind.
DEFAULT_JOB_DEADLINE_MINUTES = {
    "generation": 30,
    "edit": 30,
    "upscale": 30,
    "video": 60,
    "training": 24 * 60,
}

# Storage contexts (folders) a retention period can be set for: core.contracts.STORAGE_CONTEXT.
RETENTION_CONTEXTS = ("generated", "edited", "upscaled", "videos", "trainings")

# What a provider's job costs, per unit of the accounting it reports (PROVIDER_PRICES):
# Replicate bills seconds of `metrics.predict_time` at its model's hardware price; fal reports
# `metrics.inference_time` seconds (its per-second fallback billing: per-output prices are set
# per model here); KIE reports the credits a task consumed (1,000 credits for $5). Rough public
# prices of 2026-11: set your account's own, and each model's hardware or price.
DEFAULT_PROVIDER_PRICES: dict[str, dict[str, Any]] = {
    "replicate": {
        "unit": "second of metrics.predict_time",
        "hardware": {
            "cpu": 0.0001,
            "gpu-t4": 0.000225,
            "gpu-l40s": 0.000975,
            "gpu-a100-large": 0.0014,
            "gpu-h100": 0.001525,
        },
        "default": "gpu-a100-large",
        "models": {},
    },
    "fal": {"unit": "second of metrics.inference_time", "default": 0.0005, "models": {}},
    "kie": {"unit": "credit (creditsConsumed)", "default": 0.005, "models": {}},
}


class PriceTable(BaseModel):
    """One provider's prices: USD per unit of its accounting, by model (exact id, or without its
    `:version`), else `default`. A price may name a `hardware` entry instead of a number."""

    model_config = ConfigDict(extra="forbid")

    unit: str = ""
    default: float | str | None = None
    hardware: dict[str, float] = Field(default_factory=dict)
    models: dict[str, float | str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_hardware(self) -> PriceTable:
        named = [p for p in [self.default, *self.models.values()] if isinstance(p, str)]
        unknown = sorted({p for p in named if p not in self.hardware})
        if unknown:
            raise ValueError(f"unknown hardware {', '.join(unknown)} (not in `hardware`)")
        prices = [p for p in [self.default, *self.models.values(), *self.hardware.values()]
                  if isinstance(p, float | int)]  # fmt: skip
        if any(p < 0 for p in prices):
            raise ValueError("prices can't be negative")
        return self

    def unit_price(self, model: str) -> tuple[float, str | None] | None:
        """(USD per unit, the hardware it came from) for `model`; None: no price known."""
        price = self.models.get(model)
        if price is None:
            price = self.models.get(model.split(":", 1)[0])
        if price is None:
            price = self.default
        if price is None:
            return None
        if isinstance(price, str):
            return self.hardware[price], price
        return float(price), None


# The task queues a worker process can poll (WORKER_QUEUES), by what limits each.
WORKER_QUEUE_NAMES = ("media", "storage", "sync", "erp", "pull-sync")


class AlertTarget(BaseModel):
    """One place alerts go (ALERT_WEBHOOK_URLS)."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    # Standard Webhooks secret (`whsec_` + base64): every alert to this URL is signed with it.
    secret: str = ""
    format: Literal["standard", "slack"] = "standard"

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: str) -> str:
        if value:
            encoded = value.removeprefix("whsec_")
            try:
                base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except ValueError:
                raise ValueError(
                    "ALERT_WEBHOOK_URLS: a secret is 'whsec_' followed by standard base64"
                ) from None
        return value

    @property
    def target_id(self) -> str:
        """A stable name for this URL (deliveries are recorded under it), never the secret."""
        return hashlib.sha256(self.url.encode()).hexdigest()[:16]


class ProviderSettings(BaseSettings):
    """Base of a provider's own settings: a subclass in the provider's module sets its
    `env_prefix` (`REPLICATE_`) and declares its fields (`api_token` → REPLICATE_API_TOKEN).
    Read from the same sources as `Settings`: the environment, then `.env`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    @classmethod
    def env_prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", "")).upper()

    @classmethod
    def env_name(cls, field: str) -> str:
        """The variable a field is read from: `api_token` → `REPLICATE_API_TOKEN`."""
        if field not in cls.model_fields:
            raise KeyError(f"{cls.__name__} has no setting {field!r}")
        return f"{cls.env_prefix()}{field.upper()}"

    @classmethod
    def env_names(cls) -> list[str]:
        return [cls.env_name(field) for field in cls.model_fields]

    @classmethod
    def default_of(cls, field: str) -> Any:
        return cls.model_fields[field].get_default(call_default_factory=True)


P = TypeVar("P", bound=ProviderSettings)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")
    # Each provider's own settings, once read (`provider`).
    _providers: dict[type[ProviderSettings], ProviderSettings] = PrivateAttr(default_factory=dict)

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    media_task_queue: str = "media-jobs"
    # Output copies (provider -> storage) have a queue of their own: they are bound by
    # bandwidth and memory, not by provider calls, and are scaled apart (README "Scaling out").
    storage_task_queue: str = "media-storage"
    # The provider pollers (workflows.provider_poller) have a queue of their own, polled by every
    # media worker: their sweeps must not wait behind a backlog of job workflow tasks.
    poller_task_queue: str = "provider-pollers"
    temporal_ui_url: str = "http://localhost:8233"

    # App database: SQLite file by default, PostgreSQL by URL (postgresql://user:pw@host/db)
    database_url: str = "sqlite:///data/app.db"

    # Where outputs are kept
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: str = "data/storage"
    s3_bucket: str = "autosync"
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # Readers of S3 objects get presigned GET URLs valid this long (the bucket stays private) ...
    s3_presign_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    # ... or, when set, `{S3_PUBLIC_URL}/{key}`: a public bucket or a CDN in front of it.
    s3_public_url: str = ""
    # The S3 endpoint as browsers reach it, when it differs from S3_ENDPOINT_URL (MinIO in
    # docker-compose: http://minio:9000 inside, http://localhost:9000 outside). Presigned URLs
    # are signed for this host.
    s3_presign_endpoint_url: str = ""
    # Thumbnails of image outputs (WebP, under thumbnails/{context}/...): longest edge in pixels.
    thumbnail_max_edge: int = Field(default=512, ge=16, le=4096)

    # How providers reach us: webhook URLs and permanent output URLs are built from this
    public_base_url: str = "http://localhost:8000"

    # The provider of jobs that name none (a provider's name: `GET /v1/me` lists them). Each
    # provider's own settings (REPLICATE_*, FAL_*, KIE_* …) are declared in its module under
    # providers/ (a ProviderSettings below) and read through `Settings.provider`.
    default_provider: str = "replicate"
    # Modules of providers beyond providers/, comma separated (each exports a `SPEC`), e.g.
    # `acme.providers.magic`: loaded by the API and the worker at start.
    provider_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Webhook bridge
    webhook_tolerance_seconds: int = 300
    webhook_max_body_bytes: int = 8 * 1024 * 1024

    # Poll fallback: every `poll_interval_seconds` until a job is `poll_backoff_after_seconds`
    # old, then growing by half each poll up to the maximum (per kind: training waits longer).
    poll_interval_seconds: float = 10.0
    poll_backoff_after_seconds: float = 60.0
    max_poll_interval_seconds: float = 300.0
    training_max_poll_interval_seconds: float = 900.0
    # One poller per provider (ProviderPollerWorkflow) refreshes the provider's quiet jobs every
    # poll interval in bulk (Replicate: its list, 100 a page; others: single reads, rate
    # limited), and signals only the jobs that moved; a job's own timer then waits its maximum.
    provider_pollers: bool = True
    provider_poll_rate_per_second: float = Field(default=20.0, gt=0)
    provider_poll_concurrency: int = Field(default=8, ge=1)
    provider_poll_max_pages: int = Field(default=50, ge=1)

    # Queue controls (README "Fairness, priorities and deadlines"). Admission: a job waits
    # `queued` until its provider's admission workflow grants it a slot, at most
    # MAX_ACTIVE_JOBS_PER_USER per user and PROVIDER_MAX_ACTIVE (JSON, e.g. {"replicate": 50})
    # per provider at the provider at once (0 or left out: no limit), lowest priority first,
    # round-robin between users. false: jobs go straight to the provider.
    admission_enabled: bool = True
    max_active_jobs_per_user: int = Field(default=20, ge=0)
    provider_max_active: dict[str, int] = Field(default_factory=dict)
    # The share of a capped provider's slots kept for users with no job there yet (rounded up;
    # a user already there can always hold at least one): one user's flood then leaves room
    # for everybody else's next job instead of making it wait for a slot. 0: no reserve.
    provider_fair_reserve: float = Field(default=0.2, ge=0, lt=1)
    # Provider calls of admitted jobs (creates, cancels) run on a task queue per provider
    # ("{PROVIDER_TASK_QUEUE_PREFIX}{provider}") whose requests per second (JSON) the server
    # enforces for every worker together; left out: no limit. Replicate allows 600 creates/min.
    provider_task_queue_prefix: str = "provider-calls-"
    provider_rate_limits: dict[str, float] = Field(default_factory=lambda: {"replicate": 10.0})
    # Seconds a job of each kind may take before it is cancelled at the provider (JSON, e.g.
    # {"generation": 600}); a job's own `deadline_seconds` wins; left out: no deadline.
    default_deadline_seconds_by_kind: dict[str, float] = Field(default_factory=dict)

    # Sync runs (seed 002): the upstream ERP and how hard we may hit it
    sync_task_queue: str = "sync-runs"
    erp_task_queue: str = "erp-sync"
    erp_base_url: str = "http://127.0.0.1:8200"
    # Company id -> ERP API token, as JSON: {"acme": "erp-dev-token"}
    erp_tokens: dict[str, str] = Field(default_factory=dict)
    # Minimum seconds between upstream requests, for all runs and workers together (0: none).
    # Every worker must use the same value: it becomes the ERP task queue's rate limit.
    sync_min_interval_seconds: float = 0.0
    sync_concurrency: int = 1
    sync_max_retries: int = 5
    sync_page_size: int = 1000
    # Pages one activity fetches in a row (each committed on its own). More pages per activity
    # spread Temporal's per-activity cost over more rows; the ERP task queue's rate limit is
    # divided by it, so the requests per second stay the same.
    sync_pages_per_activity: int = Field(default=10, ge=1, le=1000)
    # Records per run whose detail endpoint is fetched to enrich them (0: no enrichment)
    max_enrich_per_run: int = 0

    # Recovery sweep (a Temporal Schedule): how often, how far back, how settled a job must be
    # before it counts as unfinished, and how many jobs of each kind one sweep looks at.
    recovery_interval_minutes: float = Field(default=10.0, gt=0)
    recovery_lookback_hours: float = Field(default=48.0, gt=0)
    recovery_min_age_minutes: float = Field(default=2.0, ge=0)
    recovery_batch: int = Field(default=200, ge=1, le=5000)

    # Bulk cancel and rerun (POST /v1/jobs/cancel, /v1/jobs/rerun): the most jobs one batch may
    # touch (422 past it), how many jobs one activity takes, and how many of those at once.
    bulk_max_jobs: int = Field(default=5000, ge=1, le=100_000)
    bulk_chunk_size: int = Field(default=100, ge=1, le=1000)
    bulk_concurrency: int = Field(default=10, ge=1, le=100)

    # Live events: how often the API looks for new events on SQLite (PostgreSQL notifies it),
    # and how long they are kept for clients catching up.
    events_poll_interval_seconds: float = Field(default=0.25, gt=0, le=10)
    events_retention_hours: float = Field(default=72.0, gt=0)

    # Health (GET /v1/health) and metrics (GET /metrics). Deadlines as JSON, per kind, e.g.
    # {"video": 120}; kinds left out keep their default.
    job_deadline_minutes: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_JOB_DEADLINE_MINUTES)
    )
    # A worker's long poll lasts up to a minute and the server remembers when it began, so an
    # idle but healthy worker can look ~60 s old: the window must be longer than that.
    health_poller_window_seconds: float = Field(default=90.0, gt=0)
    health_timeout_seconds: float = Field(default=2.0, gt=0)
    # Database and Temporal answers are reused this long (dashboards poll the endpoints).
    health_cache_seconds: float = Field(default=2.0, ge=0)
    # The worker serves the Temporal SDK's metrics on this port (0: off) ...
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    # ... and the API appends what these URLs answer to its own /metrics (comma separated).
    worker_metrics_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # API keys created at start-up, "key=user[:admin]" separated by commas. A key that was
    # created from this list and is no longer in it is revoked at the next start-up.
    bootstrap_api_keys: str = ""

    # --- Trust at the boundary (README "Security") ------------------------------------------
    # Server secret: signs the per-job token of every webhook URL and the short-lived links
    # (outputs, thumbnails, streams) handed to browsers. Same value on every API and worker.
    secret_key: str = ""
    # Lifetime of a signed link (outputs, thumbnails, the event stream).
    link_ttl_seconds: int = Field(default=3600, ge=10, le=7 * 24 * 3600)
    # Outbound fetcher (every URL we download or probe): https to public addresses only,
    # except these origins ("http://127.0.0.1:8100"), which may be http and private
    # (emulators, test servers). Comma separated.
    outbound_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    outbound_max_redirects: int = Field(default=3, ge=0, le=10)
    outbound_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    # Longest wait for the next bytes of a download (not the whole download).
    outbound_read_timeout_seconds: float = Field(default=60.0, gt=0)
    # Largest object a copy stores; past it the copy fails and nothing is stored.
    max_output_bytes: int = Field(default=2 * 1024**3, ge=1)
    # Optional: per provider, the only hosts its output URLs may come from, as JSON, e.g.
    # {"replicate": ["replicate.delivery", "*.replicate.delivery"]}. Unlisted: any public host.
    provider_output_hosts: dict[str, list[str]] = Field(default_factory=dict)
    # --- Cost per job (GET /v1/usage) ------------------------------------------------------
    # Prices per provider as JSON ({"replicate": {"models": {"owner/name": "gpu-h100"}}}, see
    # DEFAULT_PROVIDER_PRICES); a provider named here replaces its whole default table.
    provider_prices: dict[str, PriceTable] = Field(
        default_factory=lambda: {n: PriceTable(**t) for n, t in DEFAULT_PROVIDER_PRICES.items()}
    )
    # USD a user may spend per UTC day: once the day's job costs reach it, new jobs are
    # refused (402). Unset: no cap.
    max_daily_spend_per_user: float | None = Field(default=None, ge=0)
    # Idempotency-Key answers are kept this long.
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    # Largest request body on any route but the webhooks (413 past it).
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Per API key and API process: requests per second, and the burst allowed (0: no limit).
    api_rate_limit_per_second: float = Field(default=20.0, ge=0)
    api_rate_limit_burst: int = Field(default=60, ge=1)

    # Pull-sync (seed 004): registered clients pulled on a Temporal Schedule.
    pull_sync_task_queue: str = "pull-sync"
    pull_sync_interval_seconds: float = Field(default=30.0, ge=1, le=86400)
    # Whole-request deadline of a pull (sync-data, acknowledge, health), and the largest answer.
    pull_sync_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    pull_sync_max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Records asked for per pull (`limit`); an answer with more is refused whole.
    pull_sync_max_records: int = Field(default=1000, ge=1, le=100_000)
    # Consecutive failed pulls before a client is inactive (no longer pulled on the cycle) ...
    pull_sync_max_failures: int = Field(default=5, ge=1)
    # ... and how often inactive clients' health is probed to reactivate them.
    pull_sync_health_interval_seconds: float = Field(default=300.0, ge=1)
    # Hourly cleanup: clients inactive this long go; pull bookkeeping older than history goes.
    pull_sync_inactive_days: float = Field(default=7.0, gt=0)
    pull_sync_history_days: float = Field(default=7.0, gt=0)
    # A cycle pulls clients in batches of this many, one activity each, this many at a time.
    pull_sync_batch_size: int = Field(default=250, ge=1, le=5000)
    pull_sync_batch_concurrency: int = Field(default=50, ge=1, le=1000)
    # Networks client URLs may point into (they usually live on private networks): this list
    # replaces the public-only rule of the outbound fetcher for client URLs, and only for them.
    pull_sync_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"]
    )
    # Whether any key may register a client for its own user, as the seed's clients registered
    # themselves. Off by default: a registered URL is fetched by the worker every cycle, so
    # registering is an admin's call unless the users are trusted with the allowed networks.
    pull_sync_self_registration: bool = False

    # Retention (README "Retention"): stored outputs of succeeded jobs older than this many days
    # (since they ended) are deleted by a scheduled cleanup and the jobs marked `expired`.
    # Unset: kept forever. Outputs a project's node shows are never deleted.
    output_retention_days: float | None = Field(default=None, gt=0)
    # Per storage context (generated, edited, upscaled, videos, trainings) as JSON, e.g.
    # {"videos": 7}; a context listed here uses its own value, even with the default unset.
    output_retention_days_by_context: dict[str, float] = Field(default_factory=dict)
    # How often the cleanup runs, and how many jobs it expires per batch (one activity each).
    retention_interval_hours: float = Field(default=6.0, gt=0)
    retention_batch: int = Field(default=200, ge=1, le=5000)

    # Alerts (README "Alerts"): where they go, as JSON, a list of
    # {"url": ..., "secret": "whsec_...", "format": "standard" | "slack"}. Empty: no alerts.
    alert_webhook_urls: list[AlertTarget] = Field(default_factory=list)
    # Origins alert URLs may use although they are plain http or private (test receivers);
    # every other alert URL must pass the outbound fetcher's public-https rule. Comma separated.
    alert_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How often the alert sweep (a Temporal Schedule) looks for incidents.
    alert_interval_minutes: float = Field(default=1.0, gt=0)
    # A provider's share of failed jobs among those ended in the last ALERT_WINDOW_MINUTES,
    # from this share up (and at least ALERT_MIN_JOBS ended) opens a failure-rate incident.
    alert_failure_rate: float = Field(default=0.5, gt=0, le=1)
    alert_window_minutes: float = Field(default=15.0, gt=0)
    alert_min_jobs: int = Field(default=5, ge=1)
    # A sync run still going this long after it started is an incident.
    alert_sync_max_minutes: float = Field(default=120.0, gt=0)
    # Failed runs and clients gone inactive count when this recent (older ones never alert).
    alert_lookback_hours: float = Field(default=24.0, gt=0)

    # Worker tuning
    # About 100 KB of worker memory per cached workflow (180 KB sandboxed); an evicted one
    # replays its history at its next task. With 500, a worker held ~250 MB with 2,000 jobs in
    # flight (~300 MB sandboxed).
    worker_max_cached_workflows: int = 500
    worker_max_concurrent_activities: int = 200
    # Media workflow tasks one worker holds at once. They run on one event loop, so more at once
    # only queue inside the process, in arrival order; left at the server, the task queue's
    # priority and fairness decide which goes next (one user's flood takes turns with others).
    # So the worker takes more than WORKER_MIN_WORKFLOW_TASKS only while the machine's CPU is
    # under WORKER_WORKFLOW_TASKS_TARGET_CPU (0: always up to the max). Tasks waiting on a
    # local activity (a slow provider's poll) use no CPU, so they never starve the others.
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=2)
    worker_min_workflow_tasks: int = Field(default=4, ge=1)
    worker_workflow_tasks_target_cpu: float = Field(default=0.8, ge=0, le=1)
    # Outside Temporal's sandbox, which re-imported the workflow module for every workflow run:
    # in a reduced `make bench-media` round, 13 % less worker CPU per job and 53 MB less with
    # 2,000 jobs in flight. What the sandbox refused at run time (clocks, randomness, OS calls
    # in workflow code) tests/test_import_rules.py refuses on every path, and the workflow
    # tests run sandboxed. True while writing workflows, for the run-time check as well.
    worker_sandboxed: bool = False
    # Copies one worker runs at once on the storage queue: each holds a few 8 MB multipart
    # parts and a temp file, so this bounds the worker's memory and disk, not its CPU.
    worker_storage_concurrency: int = Field(default=20, ge=1)
    # Which task queues this worker process polls, comma separated: media (jobs and provider
    # calls), storage (output copies), sync (sync runs), erp (the rate-limited ERP pages).
    # Empty: all of them. Run a process per queue to scale each apart.
    worker_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # On SIGTERM, running activities get this long to finish before they are cancelled (a copy
    # or a submit then completes instead of being retried); devstack waits longer than this.
    worker_graceful_shutdown_seconds: float = Field(default=30.0, ge=0)

    @field_validator(
        "provider_modules",
        "worker_metrics_urls",
        "outbound_allowed_origins",
        "worker_queues",
        "pull_sync_allowed_networks",
        "alert_allowed_origins",
        mode="before",
    )
    @classmethod
    def _split_events(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("provider_prices", mode="after")
    @classmethod
    def _default_prices(cls, value: dict[str, PriceTable]) -> dict[str, PriceTable]:
        defaults = {n: PriceTable(**t) for n, t in DEFAULT_PROVIDER_PRICES.items()}
        return {**defaults, **value}

    @field_validator("max_daily_spend_per_user", mode="before")
    @classmethod
    def _empty_cap(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("pull_sync_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"PULL_SYNC_ALLOWED_NETWORKS: {exc}") from None
        return value

    @field_validator("worker_metrics_port", mode="before")
    @classmethod
    def _empty_port(cls, value: object) -> object:
        return 0 if isinstance(value, str) and not value.strip() else value

    @field_validator("worker_queues")
    @classmethod
    def _known_queues(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in WORKER_QUEUE_NAMES]
        if unknown:
            raise ValueError(
                f"WORKER_QUEUES: unknown {', '.join(unknown)}; "
                f"choose from {', '.join(WORKER_QUEUE_NAMES)}"
            )
        return value

    @field_validator("output_retention_days_by_context")
    @classmethod
    def _known_contexts(cls, value: dict[str, float]) -> dict[str, float]:
        for context, days in value.items():
            if context not in RETENTION_CONTEXTS:
                raise ValueError(
                    f"OUTPUT_RETENTION_DAYS_BY_CONTEXT: unknown context {context!r}; "
                    f"choose from {', '.join(RETENTION_CONTEXTS)}"
                )
            if not days > 0:
                raise ValueError(f"OUTPUT_RETENTION_DAYS_BY_CONTEXT: {context} must be > 0 days")
        return value

    def retention_days(self, context: str | None) -> float | None:
        """Days a job's outputs in `context` are kept (None: forever)."""
        if context is not None and context in self.output_retention_days_by_context:
            return self.output_retention_days_by_context[context]
        return self.output_retention_days

    def provider_task_queue(self, provider: str) -> str:
        return f"{self.provider_task_queue_prefix}{provider}"

    def job_deadline(self, kind: str) -> int:
        """Minutes a job of `kind` may run before it counts as stuck."""
        return self.job_deadline_minutes.get(kind, DEFAULT_JOB_DEADLINE_MINUTES.get(kind, 60))

    def provider(self, cls: type[P]) -> P:
        """A provider's own settings (`cls`: its env prefix and fields), read at first use from
        the environment and `.env` like these, then kept with them."""
        found = self._providers.get(cls)
        if found is None:
            found = self._providers[cls] = cls()
        assert isinstance(found, cls)
        return found

    def using(self, *configs: ProviderSettings) -> Settings:
        """These settings with providers' settings given rather than read (tests, embedding):
        `Settings(...).using(ReplicateSettings(base_url=...))`."""
        for config in configs:
            self._providers[type(config)] = config
        return self

    def signing_secret(self) -> bytes:
        """SECRET_KEY as bytes; a clear error when it is missing or too short to be a secret."""
        if len(self.secret_key) < 16:
            raise RuntimeError(
                "SECRET_KEY must be set to a random string of at least 16 characters (the same "
                "on every API and worker): it signs webhook URLs and links. `make up` makes one."
            )
        return self.secret_key.encode()

    def bootstrap_keys(self) -> list[tuple[str, str, bool]]:
        """Parse `bootstrap_api_keys` into (key, user_id, is_admin) triples."""
        keys: list[tuple[str, str, bool]] = []
        for item in self.bootstrap_api_keys.split(","):
            item = item.strip()
            if not item:
                continue
            key, _, owner = item.partition("=")
            user, _, role = owner.partition(":")
            if not key or not user:
                raise ValueError(
                    f"BOOTSTRAP_API_KEYS entry {item!r} must look like key=user[:admin]"
                )
            keys.append((key, user, role == "admin"))
        return keys


@lru_cache
def get_settings() -> Settings:
    return Settings()
