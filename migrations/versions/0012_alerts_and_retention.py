"""alerts (incidents, deliveries) and retention (jobs.expired_at, jobs.objects_deleted_at)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("objects_deleted_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_table(
        "alert_incidents",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_alert_incidents_opened_at", "alert_incidents", ["opened_at"])
    op.create_index("ix_alert_incidents_kind_subject", "alert_incidents", ["kind", "subject"])
    op.create_table(
        "alert_deliveries",
        sa.Column(
            "incident_key",
            sa.String(200),
            sa.ForeignKey("alert_incidents.key", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("target", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alert_incidents_kind_subject", table_name="alert_incidents")
    op.drop_index("ix_alert_incidents_opened_at", table_name="alert_incidents")
    op.drop_table("alert_incidents")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("objects_deleted_at")
        batch_op.drop_column("expired_at")
