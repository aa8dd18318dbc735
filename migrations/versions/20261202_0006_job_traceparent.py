"""Each job's trace context: ``jobs.traceparent``.

The W3C ``traceparent`` of the span that enqueued the job (an API request, a producer's
call), written only when that process traces (``OTEL_EXPORTER_OTLP_ENDPOINT``). Every later
step (the dispatcher's send, the submit, each poll, the transfer, the webhook) starts its span
from it, so one job is one trace whichever process or beat message drives it.

A nullable column without a default: adding it rewrites nothing and takes its lock only for
a moment.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('jobs', sa.Column('traceparent', sa.String(length=55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('traceparent')
