"""api keys' names and revocation, idempotency keys, webhook receipts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column('bootstrap', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
    # Until now BOOTSTRAP_API_KEYS was the only way to make a key: every existing key is one
    # (and is revoked at start-up once the variable no longer lists it).
    api_keys = sa.table('api_keys', sa.column('bootstrap', sa.Boolean()))
    op.execute(api_keys.update().values(bootstrap=True))

    op.create_table('idempotency_keys',
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', 'scope', 'key')
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_keys_created_at'), ['created_at'], unique=False)

    op.create_table('webhook_receipts',
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('webhook_id', sa.String(length=200), nullable=False),
    sa.Column('job_id', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('provider', 'webhook_id')
    )
    with op.batch_alter_table('webhook_receipts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_receipts_received_at'), ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_receipts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_receipts_received_at'))
    op.drop_table('webhook_receipts')
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_keys_created_at'))
    op.drop_table('idempotency_keys')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('bootstrap')
        batch_op.drop_column('name')
