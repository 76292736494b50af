"""App DB tables of pull-sync (seed 004): registered clients, the records pulled from them,
the per-item state those records leave, and the bookkeeping of pulls and cycles.

Records are keyed by (client, record id): a record pulled twice (its acknowledge was lost) is
stored once. Items keep the latest action per (user, item) by the client's timestamp, so a
`remove` stamped after a `capture` wins whichever arrives first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, utcnow


class PullClient(Base):
    __tablename__ = "pull_clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # One registration per URL: registering it again updates it.
    url: Mapped[str] = mapped_column(String(2048), unique=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    client_type: Mapped[str] = mapped_column(String(32), default="web")
    capabilities: Mapped[list[Any]] = mapped_column(default=list)
    registered_by: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_pull_at: Mapped[datetime | None]
    last_ok_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    # Pending records the client reported at its last pull (what is left after this one).
    pending_count: Mapped[int] = mapped_column(Integer, default=0)
    stored_count: Mapped[int] = mapped_column(BigInteger, default=0)
    inactive_since: Mapped[datetime | None]
    last_health_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_pull_clients_active", "active", "id"),)


class PullRecord(Base):
    __tablename__ = "pull_records"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    item_key: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    recorded_at: Mapped[datetime]  # the client's timestamp
    stored_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_pull_records_user", "user_id"),)


class PullItem(Base):
    """The latest action on one item of a user, by the client's timestamp."""

    __tablename__ = "pull_items"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime]
    client_id: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(128))


class PullAttempt(Base):
    """One pull of one client: what came, what was stored and acknowledged, or why it failed."""

    __tablename__ = "pull_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    client_id: Mapped[str] = mapped_column(String(64))
    cycle_id: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(Boolean)
    fetched: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_pull_attempts_at", "at"),
        Index("ix_pull_attempts_client", "client_id", "id"),
    )


class PullCycle(Base):
    """One cycle (scheduled or on demand): when it was due, when it ended, what it did."""

    __tablename__ = "pull_cycles"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the workflow id and run
    mode: Mapped[str] = mapped_column(String(16))
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    clients: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    stored: Mapped[int] = mapped_column(Integer, default=0)
    # finished_at - scheduled_at (or started_at on demand): how late the cycle's data is.
    lag_seconds: Mapped[float] = mapped_column(Float, default=0.0)

    __table_args__ = (Index("ix_pull_cycles_finished", "finished_at"),)
