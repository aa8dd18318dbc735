"""Revoked dashboard sessions (signing out ends a session on every API process) and failed
authentication attempts per client address (the sign-in and bearer-token rate limit).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('revoked_sessions',
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_revoked_sessions'))
    )
    op.create_index('ix_revoked_sessions_expires_at', 'revoked_sessions', ['expires_at'], unique=False)
    op.create_table('auth_failures',
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('client', name=op.f('pk_auth_failures'))
    )
    op.create_index('ix_auth_failures_expires_at', 'auth_failures', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_auth_failures_expires_at', table_name='auth_failures')
    op.drop_table('auth_failures')
    op.drop_index('ix_revoked_sessions_expires_at', table_name='revoked_sessions')
    op.drop_table('revoked_sessions')
