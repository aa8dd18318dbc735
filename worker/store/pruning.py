"""The SQL of retention: which finished jobs are old enough to go, and deleting them.

``_prunable`` is the one rule (terminal, and finished before the cutoff); ``created_at`` narrows
the scan through its index. Events, image rows and webhook deliveries go with their job
(``ON DELETE CASCADE``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, func, select
from sqlalchemy.orm import Session

from models import Batch, Job, JobEvent, JobImage
from worker.core.states import TERMINAL


def _prunable(cutoff: datetime) -> ColumnElement[bool]:
    # created_at narrows the scan through its index; finished_at is the actual rule
    return and_(Job.status.in_(TERMINAL), Job.created_at < cutoff, Job.finished_at < cutoff)


def prunable_job_ids(session: Session, *, cutoff: datetime, limit: int) -> list[uuid.UUID]:
    """The oldest finished jobs that ended before ``cutoff``, at most ``limit``."""
    query = select(Job.id).where(_prunable(cutoff)).order_by(Job.created_at).limit(limit)
    return list(session.scalars(query))


def count_prunable(session: Session, *, cutoff: datetime) -> tuple[int, int]:
    """(jobs, stored images) that pruning at ``cutoff`` would delete."""
    jobs = session.scalar(select(func.count()).where(_prunable(cutoff))) or 0
    images = (
        session.scalar(
            select(func.count()).select_from(JobImage).join(Job).where(_prunable(cutoff))
        )
        or 0
    )
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
