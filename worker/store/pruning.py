"""The SQL of retention: which finished jobs are old enough to go, and deleting them.

``_prunable`` is the one rule for a job (terminal, and finished before the cutoff);
``created_at`` narrows the scan through its index. A job of a batch is never pruned on its own:
a batch goes whole (:func:`prunable_batches`), only when every one of its jobs is past the
cutoff; it is first marked (``pruned_at``: from then on it answers 404), then its jobs are
deleted in bounded transactions, then its row. Events, image rows and webhook deliveries go
with their job (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from models import Batch, Job, JobEvent, JobImage
from worker.core.states import ACTIVE, TERMINAL


def _prunable(cutoff: datetime) -> ColumnElement[bool]:
    # created_at narrows the scan through its index; finished_at is the actual rule; jobs of a
    # batch go with their batch only
    return and_(
        Job.status.in_(TERMINAL),
        Job.created_at < cutoff,
        Job.finished_at < cutoff,
        Job.batch_id.is_(None),
    )


def _batch_prunable(cutoff: datetime) -> ColumnElement[bool]:
    """A batch being pruned already, or completed before the cutoff with no job that is still
    active or ended after it."""
    young = exists().where(
        Job.batch_id == Batch.id,
        or_(Job.status.in_(ACTIVE), Job.finished_at.is_(None), Job.finished_at >= cutoff),
    )
    return or_(Batch.pruned_at.is_not(None), and_(Batch.completed_at < cutoff, ~young))


def prunable_batches(session: Session, *, cutoff: datetime, limit: int) -> list[uuid.UUID]:
    """Batches to prune whole, those already being pruned (an interrupted run) first."""
    query = (
        select(Batch.id)
        .where(_batch_prunable(cutoff))
        .order_by(Batch.pruned_at.is_(None), Batch.created_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def mark_batch(session: Session, *, batch_id: uuid.UUID, cutoff: datetime, now: datetime) -> bool:
    """Mark the batch as being pruned if it still may be (checked again in the statement: an
    operator may have retried one of its jobs meanwhile). True when it is marked."""
    statement = (
        update(Batch)
        .where(Batch.id == batch_id, _batch_prunable(cutoff))
        .values(pruned_at=func.coalesce(Batch.pruned_at, now))
        .returning(Batch.id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).first() is not None


def batch_job_ids(session: Session, *, batch_id: uuid.UUID, limit: int) -> list[uuid.UUID]:
    query = select(Job.id).where(Job.batch_id == batch_id).order_by(Job.batch_index).limit(limit)
    return list(session.scalars(query))


def delete_batch_jobs(
    session: Session, *, batch_id: uuid.UUID, job_ids: Sequence[uuid.UUID]
) -> int:
    """Delete these jobs of a batch marked for pruning (the batch decided it, not each job)."""
    marked = exists().where(Batch.id == batch_id, Batch.pruned_at.is_not(None))
    statement = (
        delete(Job)
        .where(Job.batch_id == batch_id, Job.id.in_(list(job_ids)), marked)
        .execution_options(synchronize_session=False)
    )
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def delete_batch(session: Session, *, batch_id: uuid.UUID) -> int:
    """Delete a batch marked for pruning once it has no jobs left."""
    has_jobs = exists().where(Job.batch_id == Batch.id)
    statement = (
        delete(Batch)
        .where(Batch.id == batch_id, Batch.pruned_at.is_not(None), ~has_jobs)
        .execution_options(synchronize_session=False)
    )
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def prunable_job_ids(session: Session, *, cutoff: datetime, limit: int) -> list[uuid.UUID]:
    """The oldest finished jobs that ended before ``cutoff``, at most ``limit``."""
    query = select(Job.id).where(_prunable(cutoff)).order_by(Job.created_at).limit(limit)
    return list(session.scalars(query))


def count_prunable(session: Session, *, cutoff: datetime) -> tuple[int, int]:
    """(jobs, stored images) that pruning at ``cutoff`` would delete: loose jobs past the
    cutoff and every job of the batches that go whole."""
    batches = select(Batch.id).where(_batch_prunable(cutoff))
    goes = or_(_prunable(cutoff), Job.batch_id.in_(batches))
    jobs = session.scalar(select(func.count()).select_from(Job).where(goes)) or 0
    images = session.scalar(select(func.count()).select_from(JobImage).join(Job).where(goes)) or 0
    return jobs, images


def stored_objects(session: Session, job_ids: Sequence[uuid.UUID]) -> list[tuple[str, str]]:
    """(bucket, key) of every stored image of these jobs."""
    query = select(JobImage.bucket, JobImage.key).where(JobImage.job_id.in_(list(job_ids)))
    return [(bucket, key) for bucket, key in session.execute(query)]


def count_events(session: Session, job_ids: Sequence[uuid.UUID]) -> int:
    query = select(func.count()).where(JobEvent.job_id.in_(list(job_ids)))
    return session.scalar(query) or 0


def delete_jobs(session: Session, *, job_ids: Sequence[uuid.UUID], cutoff: datetime) -> int:
    """Delete these jobs if they are still prunable; events, images and webhook deliveries
    go with them (ON DELETE CASCADE). Returns how many jobs were deleted."""
    statement = (
        delete(Job)
        .where(Job.id.in_(list(job_ids)), _prunable(cutoff))
        .execution_options(synchronize_session=False)
    )
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def delete_empty_batches(session: Session, *, cutoff: datetime) -> int:
    """Delete batches completed before ``cutoff`` that have no jobs left."""
    has_jobs = exists().where(Job.batch_id == Batch.id)
    statement = (
        delete(Batch)
        .where(Batch.completed_at < cutoff, ~has_jobs)
        .execution_options(synchronize_session=False)
    )
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]
