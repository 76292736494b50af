"""The sync module interface and the shape of the table each module upserts into."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, Column, Date, Index, String, Table

from core.models import Base, UTCDateTime


def record_table(name: str) -> Table:
    """A module's table: one row per (company, upstream id), so a re-run never duplicates."""
    return Table(
        name,
        Base.metadata,
        Column("company_id", String(64), primary_key=True),
        Column("external_id", String(64), primary_key=True),
        Column("business_date", Date, nullable=True),
        Column("upstream_updated_at", UTCDateTime(), nullable=False),
        Column("data", JSON, nullable=False),
        Column("run_id", String(64), nullable=True),
        Column("synced_at", UTCDateTime(), nullable=False),
        Index(f"ix_{name}_company_date", "company_id", "business_date"),
    )


@dataclass(frozen=True)
class SyncModule:
    """One upstream view: where to page it from and where its rows go."""

    name: str  # our name, used in progress, logs and the API (`vendas`)
    view: str  # the upstream view (`vw_vendas`)
    date_field: str  # the row's business date, used by `period` windows
    table: Table
    # Fields kept as columns-worth of meaning; the whole row is stored in `data` anyway.
    description: str = ""
