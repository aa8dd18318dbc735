"""Indexes of the web dashboard: recent finishes, a batch's jobs by state, batches newest first.

- ``ix_jobs_finished_at`` (finished_at, status, error_code): finishes by state, throughput over
  the last hour and failures by error code read only the jobs that finished in the window,
  however large the table, from the index alone.
- ``ix_jobs_batch_status``: a batch's counts by state (an index-only scan) and its gallery
  filtered by state, page by page in batch order (keyset on ``batch_index``).
- ``ix_batches_created_at``: the batch list, newest first, page by page.

``ix_jobs_batch_status`` also answers whether a batch still has active jobs, so it replaces
``ix_jobs_batch_active`` (one index fewer to write on every insert and status change).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINISHED = sa.text("finished_at IS NOT NULL")
BATCH_ACTIVE = sa.text("batch_id IS NOT NULL AND "
                       "status IN ('queued', 'submitting', 'running', 'transferring')")
IN_BATCH = sa.text("batch_id IS NOT NULL")


def upgrade() -> None:
    op.create_index('ix_jobs_finished_at', 'jobs', ['finished_at', 'status', 'error_code'],
                    postgresql_where=FINISHED, sqlite_where=FINISHED)
    op.create_index('ix_jobs_batch_status', 'jobs', ['batch_id', 'status', 'batch_index'],
                    postgresql_where=IN_BATCH, sqlite_where=IN_BATCH)
    op.create_index('ix_batches_created_at', 'batches', ['created_at'])
    op.drop_index('ix_jobs_batch_active', table_name='jobs')


def downgrade() -> None:
    op.create_index('ix_jobs_batch_active', 'jobs', ['batch_id'],
                    postgresql_where=BATCH_ACTIVE, sqlite_where=BATCH_ACTIVE)
    op.drop_index('ix_batches_created_at', table_name='batches')
    op.drop_index('ix_jobs_batch_status', table_name='jobs')
    op.drop_index('ix_jobs_finished_at', table_name='jobs')
