"""pull-sync (seed 004): clients, records, items, attempts, cycles

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pull_clients",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False, unique=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("client_type", sa.String(32), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("registered_by", sa.String(64), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_pull_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_count", sa.Integer(), nullable=False),
        sa.Column("stored_count", sa.BigInteger(), nullable=False),
        sa.Column("inactive_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_health_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pull_clients_user_id", "pull_clients", ["user_id"])
    op.create_index("ix_pull_clients_active", "pull_clients", ["active", "id"])
    op.create_table(
        "pull_records",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("record_id", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("item_key", sa.String(128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pull_records_user", "pull_records", ["user_id"])
    op.create_table(
        "pull_items",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("item_key", sa.String(128), primary_key=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(128), nullable=False),
    )
    op.create_table(
        "pull_attempts",
        sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("cycle_id", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("acknowledged", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_pull_attempts_at", "pull_attempts", ["at"])
    op.create_index("ix_pull_attempts_client", "pull_attempts", ["client_id", "id"])
    op.create_table(
        "pull_cycles",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("clients", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("lag_seconds", sa.Float(), nullable=False),
    )
    op.create_index("ix_pull_cycles_finished", "pull_cycles", ["finished_at"])


def downgrade() -> None:
    for table in ("pull_cycles", "pull_attempts", "pull_items", "pull_records", "pull_clients"):
        op.drop_table(table)
