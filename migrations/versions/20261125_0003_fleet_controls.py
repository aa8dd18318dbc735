"""Fleet-wide controls (token buckets, pause, breaker) and the dispatcher's column.

The dispatcher's indexes are built by 0004, without blocking writes to ``jobs``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 10:00:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

def upgrade() -> None:
    controls = op.create_table(
        'fleet_controls',
        sa.Column('name', sa.String(length=16), nullable=False),
        sa.Column('tokens', sa.Float(), nullable=False),
        sa.Column('tokens_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('rate_factor', sa.Float(), nullable=False),
        sa.Column('rate_changed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('cooldown_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('strikes', sa.Integer(), nullable=False),
        sa.Column('paused', sa.Boolean(), nullable=False),
        sa.Column('pause_code', sa.String(length=32), nullable=True),
        sa.Column('pause_reason', sa.Text(), nullable=True),
        sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('paused_by', sa.String(length=200), nullable=True),
        sa.Column('breaker', sa.String(length=16), nullable=False),
        sa.Column('breaker_failures', sa.Integer(), nullable=False),
        sa.Column('breaker_opened_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('breaker_reason', sa.Text(), nullable=True),
        sa.Column('probe_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('dispatcher_seen_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("breaker IN ('closed', 'open')", name=op.f('ck_fleet_controls_breaker')),
        sa.CheckConstraint('rate_factor > 0 AND rate_factor <= 1',
                           name=op.f('ck_fleet_controls_rate_factor')),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_fleet_controls')),
    )
    now = datetime.now(UTC)
    op.bulk_insert(controls, [  # buckets start full (tokens are capped at the burst on read)
        {"name": name, "tokens": 1e9, "tokens_at": now, "rate_factor": 1.0, "strikes": 0,
         "paused": False, "breaker": "closed", "breaker_failures": 0, "updated_at": now}
        for name in ("submit", "poll")])
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('dispatched_at')
    op.drop_table('fleet_controls')
