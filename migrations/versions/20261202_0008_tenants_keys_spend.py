"""Tenants, scoped API keys, spend and budgets.

``tenants`` (budgets, weight, in-flight cap, submit rate), ``api_keys`` (only a hash of each secret),
``spend_counters`` (charged, possible and reserved money per tenant day/month and per batch,
in micro-units) and the ``charges`` ledger; jobs and batches record their tenant and key, jobs
the budget their submission holds, batches their ``max_spend``. Existing rows belong to the
``default`` tenant (a constant server default: no table rewrite on Postgres 11+).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED_LOOSE = "status = 'queued' AND batch_id IS NULL"


def upgrade() -> None:
    tenants = op.create_table(
        'tenants',
        sa.Column('name', sa.String(length=63), nullable=False),
        sa.Column('daily_budget', sa.BigInteger(), nullable=True),
        sa.Column('monthly_budget', sa.BigInteger(), nullable=True),
        sa.Column('weight', sa.Float(), nullable=False),
        sa.Column('max_in_flight', sa.Integer(), nullable=True),
        sa.Column('submit_rate', sa.Float(), nullable=True),
        sa.Column('rate_tokens', sa.Float(), nullable=True),
        sa.Column('rate_tokens_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('weight > 0', name=op.f('ck_tenants_weight')),
        sa.CheckConstraint(
            'max_in_flight IS NULL OR max_in_flight >= 0', name=op.f('ck_tenants_max_in_flight')
        ),
        sa.CheckConstraint(
            'submit_rate IS NULL OR submit_rate > 0', name=op.f('ck_tenants_submit_rate')
        ),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_tenants')),
    )
    now = sa.func.now() if op.get_context().dialect.name == 'postgresql' else sa.func.current_timestamp()
    op.execute(
        tenants.insert().from_select(
            ['name', 'weight', 'created_at', 'updated_at'],
            sa.select(sa.literal('default'), sa.literal(1.0), now, now),
        )
    )
    op.create_table(
        'api_keys',
        sa.Column('id', sa.String(length=32), nullable=False),
        sa.Column('tenant', sa.String(length=63), nullable=False),
        sa.Column('scopes', sa.String(length=64), nullable=False),
        sa.Column('secret_sha256', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['tenant'], ['tenants.name'], name=op.f('fk_api_keys_tenant_tenants')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    )
    op.create_table(
        'spend_counters',
        sa.Column('scope', sa.String(length=80), nullable=False),
        sa.Column('period', sa.String(length=16), nullable=False),
        sa.Column('charged', sa.BigInteger(), nullable=False),
        sa.Column('charged_count', sa.Integer(), nullable=False),
        sa.Column('possible', sa.BigInteger(), nullable=False),
        sa.Column('possible_count', sa.Integer(), nullable=False),
        sa.Column('reserved', sa.BigInteger(), nullable=False),
        sa.Column('warned', sa.Boolean(), nullable=False),
        sa.CheckConstraint(
            'charged >= 0 AND possible >= 0 AND reserved >= 0',
            name=op.f('ck_spend_counters_amounts'),
        ),
        sa.PrimaryKeyConstraint('scope', 'period', name=op.f('pk_spend_counters')),
    )
    op.create_table(
        'charges',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('job_id', sa.Uuid(), nullable=False),
        sa.Column('batch_id', sa.Uuid(), nullable=True),
        sa.Column('tenant', sa.String(length=63), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.CheckConstraint("kind IN ('charged', 'possible')", name=op.f('ck_charges_kind')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_charges')),
    )
    op.create_index('ix_charges_tenant_at', 'charges', ['tenant', 'at'], unique=False)
    op.create_index('ix_charges_batch_id', 'charges', ['batch_id'], unique=False)
    op.create_index('ix_charges_job_id', 'charges', ['job_id'], unique=False)

    op.add_column(
        'jobs',
        sa.Column('tenant', sa.String(length=63), server_default='default', nullable=False),
    )
    op.add_column('jobs', sa.Column('key_id', sa.String(length=32), nullable=True))
    op.add_column('jobs', sa.Column('reservation', sa.JSON(), nullable=True))
    op.create_index(
        'ix_jobs_queued_tenant',
        'jobs',
        ['tenant', 'priority', 'next_action_at'],
        unique=False,
        postgresql_where=sa.text(QUEUED_LOOSE),
        sqlite_where=sa.text(QUEUED_LOOSE),
    )
    op.add_column(
        'batches',
        sa.Column('tenant', sa.String(length=63), server_default='default', nullable=False),
    )
    op.add_column('batches', sa.Column('key_id', sa.String(length=32), nullable=True))
    op.add_column('batches', sa.Column('max_spend', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('batches') as batch:
        batch.drop_column('max_spend')
        batch.drop_column('key_id')
        batch.drop_column('tenant')
    op.drop_index(
        'ix_jobs_queued_tenant',
        table_name='jobs',
        postgresql_where=sa.text(QUEUED_LOOSE),
        sqlite_where=sa.text(QUEUED_LOOSE),
    )
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('reservation')
        batch.drop_column('key_id')
        batch.drop_column('tenant')
    op.drop_index('ix_charges_job_id', table_name='charges')
    op.drop_index('ix_charges_batch_id', table_name='charges')
    op.drop_index('ix_charges_tenant_at', table_name='charges')
    op.drop_table('charges')
    op.drop_table('spend_counters')
    op.drop_table('api_keys')
    op.drop_table('tenants')
