"""SQLAlchemy models of the app DB: the read model and history of everything Temporal runs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone on the way in)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    # Only a SHA-256 of the key is kept; the key itself is shown once when created. Its first
    # 16 hex digits are the key's public id (listing, revoking).
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    name: Mapped[str | None] = mapped_column(String(100))
    # Created from BOOTSTRAP_API_KEYS: revoked at start-up once the variable no longer lists it.
    bootstrap: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """An `Idempotency-Key` a user sent on a create: the same key answers with the same resource.

    `request_hash` is a SHA-256 of the request body as parsed; a different body under a used
    key is refused (409 idempotency_key_reused). Rows older than IDEMPOTENCY_TTL_HOURS go.
    """

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)  # "jobs", "sync-runs"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookReceipt(Base):
    """A provider webhook id already handed to its workflow: a replay of it signals nothing."""

    __tablename__ = "webhook_receipts"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256))
    input: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    # `provider_status` normalised (a ProviderPhase), so nothing outside a provider's module
    # reads its raw statuses; None on rows recorded before it (their provider's spec reads them).
    provider_phase: Mapped[str | None] = mapped_column(String(16))
    provider_job_id: Mapped[str | None] = mapped_column(String(128), index=True)
    project_id: Mapped[str | None] = mapped_column(String(64))
    node_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    # A rerun: the job it repeats (`core.jobs.rerun`).
    rerun_of: Mapped[str | None] = mapped_column(String(64), index=True)

    # Storage (seed 001): where the outputs were put and how
    outputs: Mapped[list[Any]] = mapped_column(default=list)
    output_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    storage_provider: Mapped[str | None] = mapped_column(String(16))
    storage_bucket: Mapped[str | None] = mapped_column(String(128))
    storage_keys: Mapped[list[Any]] = mapped_column(default=list)
    operation_type: Mapped[str | None] = mapped_column(String(16))
    storage_context: Mapped[str | None] = mapped_column(String(16))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)

    # Set by the recovery sweep: `recovered`, or `needs_regeneration` when every output URL
    # expired before it could be stored; `recovery_reason` says why.
    recovery_state: Mapped[str | None] = mapped_column(String(24))
    recovery_reason: Mapped[str | None] = mapped_column(Text)
    webhook_count: Mapped[int] = mapped_column(Integer, default=0)
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    # Counted by media.submit before each provider call: above 1, an earlier attempt may have
    # created a provider job whose answer we never saw, so the next one looks for it first.
    submit_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Attempts the provider refused with an answer (a 429, an error status): they made no
    # provider job. Attempts neither refused nor answered leave the submit unconfirmed.
    submit_refusals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # What the job cost (USD), from the provider's own accounting priced by PROVIDER_PRICES,
    # written with its success (core.usage); null when unknown. `cost_source` names the
    # accounting ("replicate:metrics.predict_time"), `cost_detail` the figures it came from.
    cost_usd: Mapped[float | None] = mapped_column(Numeric(18, 8, asdecimal=False))
    cost_source: Mapped[str | None] = mapped_column(String(64))
    cost_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    provider_completed_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Retention: when the cleanup marked the job `expired`, and when its objects were deleted
    # (null while the deletion is pending: the next cleanup finishes it).
    expired_at: Mapped[datetime | None]
    objects_deleted_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_jobs_user_created", "user_id", "created_at", "id"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_project", "project_id"),
        # health, /metrics and the recovery sweep read the jobs that ended lately
        Index("ix_jobs_completed", "completed_at"),
        # GET /v1/usage and the daily spend cap sum a user's costs by completion time
        Index("ix_jobs_user_completed", "user_id", "completed_at"),
    )


class JobBatch(Base):
    """A bulk action on jobs (`core.jobs.bulk`): who asked, what for, and how far it got."""

    __tablename__ = "job_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))  # who asked
    action: Mapped[str] = mapped_column(String(16))  # cancel | rerun
    all_users: Mapped[bool] = mapped_column(Boolean, default=False)
    criteria: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the ids or filter as asked
    status: Mapped[str] = mapped_column(String(16))  # running | done | failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_job_batches_user_created", "user_id", "created_at"),)


class JobBatchItem(Base):
    """One job a batch matched, at its place (`seq`), and what became of it (None: not yet)."""

    __tablename__ = "job_batch_items"

    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(16))  # done | failed | skipped
    new_job_id: Mapped[str | None] = mapped_column(String(64))  # a rerun's new job
    error: Mapped[str | None] = mapped_column(Text)


# --- Sync runs (seed 002) ----------------------------------------------------------------------

ACTIVE_SYNC_STATUSES = ("QUEUED", "RUNNING")


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    modules: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16))
    current_module: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error_message: Mapped[str | None] = mapped_column(Text)
    triggered_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_sync_runs_company_created", "company_id", "created_at", "id"),
        Index("ix_sync_runs_created", "created_at", "id"),
        # One run at a time per company, enforced by the database itself.
        Index(
            "uq_sync_runs_active_company",
            "company_id",
            unique=True,
            sqlite_where=text("status IN ('QUEUED', 'RUNNING')"),
            postgresql_where=text("status IN ('QUEUED', 'RUNNING')"),
        ),
    )


class SyncRunLog(Base):
    __tablename__ = "sync_run_logs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(8))
    module: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)

    __table_args__ = (Index("ix_sync_run_logs_run", "run_id", "id"),)


class SyncCursor(Base):
    """Where the next incremental run of a module starts for a company.

    A reset cursor (`updated_since` null, `reset_at` set) makes the next incremental run read
    the module's whole history; a run created before the reset never moves it.
    """

    __tablename__ = "sync_cursors"

    company_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    module: Mapped[str] = mapped_column(String(64), primary_key=True)
    updated_since: Mapped[datetime | None]
    run_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    reset_at: Mapped[datetime | None]
    reset_by: Mapped[str | None] = mapped_column(String(64))


class SyncRunModule(Base):
    """Live progress of one module of a run, written with each page in the same transaction."""

    __tablename__ = "sync_run_modules"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="CASCADE"), primary_key=True
    )
    module: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    processed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    enriched: Mapped[int] = mapped_column(Integer, default=0)
    # Reconciliation: rows the upstream's pages carried, and the total its last page reported.
    received: Mapped[int] = mapped_column(Integer, default=0)
    upstream_total: Mapped[int | None] = mapped_column(Integer)
    cursor: Mapped[str | None] = mapped_column(String(256))
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """The outbox of state changes: appended in the transaction that makes the change.

    Ids grow in commit order (writers take a transaction lock first on PostgreSQL; SQLite has
    one writer), so "everything after id N" is a complete, ordered catch-up for a client.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    topic: Mapped[str] = mapped_column(String(160))
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (Index("ix_events_topic_id", "topic", "id"),)


class Project(Base):
    """A user's project (seed 003): `content.nodes[]`, whose nodes jobs fill in when they end."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    content: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecoveryAttempt(Base):
    """One thing the recovery sweep (or an adoption) did about a job: when, what, result."""

    __tablename__ = "recovery_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    problem: Mapped[str] = mapped_column(String(32))  # what the sweep found
    action: Mapped[str] = mapped_column(String(32))  # what it did
    result: Mapped[str] = mapped_column(String(24))  # started | done | needs_regeneration | failed
    detail: Mapped[str | None] = mapped_column(Text)


class AlertIncident(Base):
    """Something the alert sweep found (`core.alerts`), recorded once under its key.

    The key names the incident itself (`sync_failed:{run_id}`), or, for a condition that comes
    and goes (a failure rate, storage errors), the episode: one open row per condition, resolved
    when the condition clears; a new episode gets a new key.
    """

    __tablename__ = "alert_incidents"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(160))
    summary: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    resolved_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_alert_incidents_kind_subject", "kind", "subject"),)


class AlertDelivery(Base):
    """An incident sent to one alert URL (ALERT_WEBHOOK_URLS, by its target id): sent once."""

    __tablename__ = "alert_deliveries"

    incident_key: Mapped[str] = mapped_column(
        ForeignKey("alert_incidents.key", ondelete="CASCADE"), primary_key=True
    )
    target: Mapped[str] = mapped_column(String(32), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime] = mapped_column(default=utcnow)
