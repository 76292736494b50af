"""jobs.cost_usd, cost_source, cost_detail: what a job cost, from the provider's accounting

Written with the job's success (core.usage); rows from before stay null (unknown). The
index serves GET /v1/usage and the daily spend cap (a user's costs by completion time).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cost_usd", sa.Numeric(precision=18, scale=8, asdecimal=False), nullable=True)
        )
        batch_op.add_column(sa.Column("cost_source", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("cost_detail", sa.JSON(), nullable=True))
        batch_op.create_index("ix_jobs_user_completed", ["user_id", "completed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_user_completed")
        batch_op.drop_column("cost_detail")
        batch_op.drop_column("cost_source")
        batch_op.drop_column("cost_usd")
