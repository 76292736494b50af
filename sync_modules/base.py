"""The sync module interface and the shape of the table each module upserts into."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

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

    def business_date(self, item: dict[str, Any]) -> date | None:
        value = item.get(self.date_field)
        return date.fromisoformat(value[:10]) if isinstance(value, str) and value else None

    def to_row(
        self, company_id: str, item: dict[str, Any], run_id: str, now: datetime
    ) -> dict[str, Any]:
        updated = datetime.fromisoformat(str(item["updated_at"]).replace("Z", "+00:00"))
        return {
            "company_id": company_id,
            "external_id": str(item["id"]),
            "business_date": self.business_date(item),
            "upstream_updated_at": updated,
            "data": item,
            "run_id": run_id,
            "synced_at": now,
        }
