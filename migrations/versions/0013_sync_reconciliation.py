"""sync module control: resettable cursors, and each module's received rows against the
upstream's reported total (reconciliation)

`sync_cursors.updated_since` becomes nullable: a reset cursor (null, with `reset_at`) makes the
next incremental run read the module's whole history.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_run_modules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("received", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("upstream_total", sa.Integer(), nullable=True))
    with op.batch_alter_table("sync_cursors", schema=None) as batch_op:
        batch_op.alter_column(
            "updated_since", existing_type=sa.DateTime(timezone=True), nullable=True
        )
        batch_op.add_column(sa.Column("reset_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reset_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # A reset cursor has no watermark to go back to: its module starts 30 days back instead.
    op.execute("DELETE FROM sync_cursors WHERE updated_since IS NULL")
    with op.batch_alter_table("sync_cursors", schema=None) as batch_op:
        batch_op.drop_column("reset_by")
        batch_op.drop_column("reset_at")
        batch_op.alter_column(
            "updated_since", existing_type=sa.DateTime(timezone=True), nullable=False
        )
    with op.batch_alter_table("sync_run_modules", schema=None) as batch_op:
        batch_op.drop_column("upstream_total")
        batch_op.drop_column("received")
