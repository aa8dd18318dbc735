"""Batches, job references and callback URLs, webhook deliveries and their attempts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 06:47:32.414693
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "status IN ('queued', 'submitting', 'running', 'transferring')"
BATCH_ACTIVE = sa.text(f"batch_id IS NOT NULL AND {ACTIVE}")
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_sha256', sa.String(length=64), nullable=True),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('callback_url', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('total >= 1', name=op.f('ck_batches_total')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_batches_idempotency_key'))
    )
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('batch_id', sa.Uuid(), nullable=True))
        batch.add_column(sa.Column('batch_index', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('ref', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('callback_url', sa.Text(), nullable=True))
        batch.create_unique_constraint(op.f('uq_jobs_batch_id_batch_index'),
                                       ['batch_id', 'batch_index'])
        batch.create_foreign_key(op.f('fk_jobs_batch_id_batches'), 'batches', ['batch_id'],
                                 ['id'])
    op.create_index('ix_jobs_batch_active', 'jobs', ['batch_id'], unique=False,
                    postgresql_where=BATCH_ACTIVE, sqlite_where=BATCH_ACTIVE)
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('dedup_key', sa.String(length=64), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('job_id', sa.Uuid(), nullable=True),
    sa.Column('batch_id', sa.Uuid(), nullable=True),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f('ck_webhook_deliveries_status')),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_webhook_deliveries_batch_id_batches'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_webhook_deliveries_job_id_jobs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('dedup_key', name=op.f('uq_webhook_deliveries_dedup_key'))
    )
    op.create_index('ix_webhook_deliveries_batch_id', 'webhook_deliveries', ['batch_id'], unique=False)
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries', ['next_attempt_at'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
    op.create_index('ix_webhook_deliveries_job_id', 'webhook_deliveries', ['job_id'], unique=False)
    op.create_table('webhook_attempts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('delivery_id', sa.Uuid(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], name=op.f('fk_webhook_attempts_delivery_id_webhook_deliveries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts'))
    )
    op.create_index('ix_webhook_attempts_delivery_id_id', 'webhook_attempts', ['delivery_id', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_webhook_attempts_delivery_id_id', table_name='webhook_attempts')
    op.drop_table('webhook_attempts')
    op.drop_index('ix_webhook_deliveries_job_id', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries', postgresql_where=PENDING, sqlite_where=PENDING)
    op.drop_index('ix_webhook_deliveries_batch_id', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_index('ix_jobs_batch_active', table_name='jobs', postgresql_where=BATCH_ACTIVE, sqlite_where=BATCH_ACTIVE)
    with op.batch_alter_table('jobs') as batch:
        batch.drop_constraint(op.f('fk_jobs_batch_id_batches'), type_='foreignkey')
        batch.drop_constraint(op.f('uq_jobs_batch_id_batch_index'), type_='unique')
        batch.drop_column('callback_url')
        batch.drop_column('ref')
        batch.drop_column('batch_index')
        batch.drop_column('batch_id')
    op.drop_table('batches')
