"""Indexes of the dispatcher and the web dashboard, built without blocking writes.

Dispatcher:

- ``ix_jobs_queued`` (priority, next_action_at): single jobs waiting for a submit slot, due
  first; batches are read through ``ix_jobs_batch_status``.
- ``ix_jobs_dispatched``: jobs sent to Celery but not yet claimed (lost messages are sent again).

Dashboard:

- ``ix_jobs_finished_at`` (finished_at, status, error_code): finishes by state, throughput over
  the last hour and failures by error code read only the jobs that finished in the window,
  however large the table, from the index alone.
- ``ix_jobs_batch_status``: a batch's counts by state (an index-only scan) and its gallery
  filtered by state, page by page in batch order (keyset on ``batch_index``).
- ``ix_batches_created_at``: the batch list, newest first, page by page.

``ix_jobs_batch_status`` also answers whether a batch still has active jobs, so it replaces
``ix_jobs_batch_active`` (one index fewer to write on every insert and status change).

On Postgres every index is built and dropped ``CONCURRENTLY`` (``migrations.online``): the
upgrade runs while workers and producers keep writing, and can run again if interrupted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from migrations import online

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUEUED = sa.text("status = 'queued' AND batch_id IS NULL")
DISPATCHED = sa.text("status = 'queued' AND dispatched_at IS NOT NULL")
FINISHED = sa.text("finished_at IS NOT NULL")
BATCH_ACTIVE = sa.text("batch_id IS NOT NULL AND "
                       "status IN ('queued', 'submitting', 'running', 'transferring')")
IN_BATCH = sa.text("batch_id IS NOT NULL")


def upgrade() -> None:
    online.create_index('ix_jobs_queued', 'jobs', ['priority', 'next_action_at'], where=QUEUED)
    online.create_index('ix_jobs_dispatched', 'jobs', ['dispatched_at'], where=DISPATCHED)
    online.create_index('ix_jobs_finished_at', 'jobs', ['finished_at', 'status', 'error_code'],
                        where=FINISHED)
    online.create_index('ix_jobs_batch_status', 'jobs', ['batch_id', 'status', 'batch_index'],
                        where=IN_BATCH)
    online.create_index('ix_batches_created_at', 'batches', ['created_at'])
    online.drop_index('ix_jobs_batch_active', 'jobs')


def downgrade() -> None:
    online.create_index('ix_jobs_batch_active', 'jobs', ['batch_id'], where=BATCH_ACTIVE)
    online.drop_index('ix_batches_created_at', 'batches')
    online.drop_index('ix_jobs_batch_status', 'jobs')
    online.drop_index('ix_jobs_finished_at', 'jobs')
    online.drop_index('ix_jobs_dispatched', 'jobs')
    online.drop_index('ix_jobs_queued', 'jobs')
