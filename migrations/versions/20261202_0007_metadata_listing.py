"""Metadata on jobs and batches, listings page by page, retention by whole batches.

- ``jobs.metadata`` and ``batches.metadata``: a producer's free-form JSON object (``jsonb`` on
  Postgres), with a GIN index (``jsonb_path_ops``) each, so ``metadata.KEY=VALUE`` filters
  (containment, ``@>``) read the index.
- ``batches.pruned_at``: set when retention starts deleting a batch; from then on the batch
  answers 404, never a partial count, while its jobs are deleted in bounded transactions.
- ``ix_jobs_created_at_id`` (created_at, id): ``GET /v1/jobs`` pages newest first by keyset
  on both columns (replaces ``ix_jobs_created_at``, which it covers).
- ``ix_webhook_deliveries_status_created`` (status, created_at): ``GET
  /v1/webhooks/deliveries?status=failed``, newest first.

The columns are nullable without a default (nothing is rewritten); on Postgres they are
added with ``IF NOT EXISTS`` so the migration can run again after an interruption in one of
the concurrent index builds that follow (``migrations.online``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import online

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GIN = {'postgresql_using': 'gin', 'postgresql_ops': {'metadata': 'jsonb_path_ops'}}


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE jobs ADD COLUMN IF NOT EXISTS metadata jsonb')
        op.execute('ALTER TABLE batches ADD COLUMN IF NOT EXISTS metadata jsonb')
        op.execute('ALTER TABLE batches ADD COLUMN IF NOT EXISTS pruned_at timestamptz')
    else:
        op.add_column('jobs', sa.Column('metadata', sa.JSON(), nullable=True))
        op.add_column('batches', sa.Column('metadata', sa.JSON(), nullable=True))
        op.add_column('batches', sa.Column('pruned_at', sa.DateTime(timezone=True), nullable=True))
    online.create_index('ix_jobs_metadata', 'jobs', ['metadata'], **GIN)
    online.create_index('ix_batches_metadata', 'batches', ['metadata'], **GIN)
    online.create_index('ix_jobs_created_at_id', 'jobs', ['created_at', 'id'])
    online.drop_index('ix_jobs_created_at', 'jobs')
    online.create_index('ix_webhook_deliveries_status_created', 'webhook_deliveries',
                        ['status', 'created_at'])


def downgrade() -> None:
    online.drop_index('ix_webhook_deliveries_status_created', 'webhook_deliveries')
    online.create_index('ix_jobs_created_at', 'jobs', ['created_at'])
    online.drop_index('ix_jobs_created_at_id', 'jobs')
    online.drop_index('ix_batches_metadata', 'batches')
    online.drop_index('ix_jobs_metadata', 'jobs')
    with op.batch_alter_table('batches') as batch:
        batch.drop_column('pruned_at')
        batch.drop_column('metadata')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('metadata')
