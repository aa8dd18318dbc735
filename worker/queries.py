"""SQL for operators: the queue at a glance, job listings, retry candidates and retention.

What runs at scrape time stays small: the active jobs only, which the partial index
``ix_jobs_active_next`` covers, under a statement timeout. Whole-table counts are for the
``status`` command, run by a person. Status changes themselves stay in ``worker.repository``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, func, select, text
from sqlalchemy.orm import Session

from models import ACTIVE_STATUSES, Batch, Job, JobEvent, JobImage
from worker.states import TERMINAL, JobStatus

_TERMINAL = sorted(s.value for s in TERMINAL)


def limit_statement_time(session: Session, seconds: float) -> None:
    """Cap every statement of this transaction (Postgres; SQLite has no such setting)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(func.set_config("statement_timeout", f"{int(seconds * 1000)}", True))
        )


def ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


# --- the queue ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSnapshot:
    """Active jobs by status (every active status, zeros included) and the queued backlog."""

    active: dict[str, int]
    queued_by_priority: dict[str, int]
    queued_due: int
    oldest_queued_at: datetime | None


def queue_snapshot(session: Session, *, now: datetime) -> QueueSnapshot:
    """One pass over the active jobs (the partial index), grouped by status and priority."""
    query = (
        select(
            Job.status,
            Job.priority,
            func.count(),
            func.count().filter(Job.next_action_at <= now),
            func.min(Job.created_at),
        )
        .where(Job.status.in_(ACTIVE_STATUSES))
        .group_by(Job.status, Job.priority)
    )
    active = dict.fromkeys(ACTIVE_STATUSES, 0)
    by_priority = {"interactive": 0, "batch": 0}
    due, oldest = 0, None
    for status, priority, count, count_due, first in session.execute(query):
        active[status] += count
        if status == JobStatus.QUEUED:
            by_priority[priority] = by_priority.get(priority, 0) + count
            due += count_due
            oldest = first if oldest is None or first < oldest else oldest
    return QueueSnapshot(active, by_priority, due, oldest)


def counts_by_status(session: Session) -> dict[str, int]:
    """Every job by status (a full scan: for people, not for scrapes)."""
    query = select(Job.status, func.count()).group_by(Job.status)
    return dict(session.execute(query).all())


def failed_by_code(session: Session) -> dict[str, int]:
    query = (
        select(func.coalesce(Job.error_code, "unknown"), func.count())
        .where(Job.status == JobStatus.FAILED.value)
        .group_by(Job.error_code)
    )
    return dict(session.execute(query).all())


# --- listings -----------------------------------------------------------------------------------


def list_jobs(
    session: Session,
    *,
    statuses: Sequence[str] = (),
    batch_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[Job]:
    """Newest first, filtered by status, batch and creation time."""
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(Job.status.in_(list(statuses)))
    if batch_id is not None:
        conditions.append(Job.batch_id == batch_id)
    if since is not None:
        conditions.append(Job.created_at >= since)
    query = select(Job).where(*conditions).order_by(Job.created_at.desc(), Job.id).limit(limit)
    return list(session.scalars(query))


def failed_job_ids(
    session: Session, *, batch_id: uuid.UUID | None = None, code: str | None = None
) -> list[uuid.UUID]:
    """Ids of failed jobs, optionally of one batch and one error code, oldest first."""
    conditions = [Job.status == JobStatus.FAILED.value]
    if batch_id is not None:
        conditions.append(Job.batch_id == batch_id)
    if code is not None:
        conditions.append(Job.error_code == code)
    return list(session.scalars(select(Job.id).where(*conditions).order_by(Job.created_at)))


# --- retention ----------------------------------------------------------------------------------


def _prunable(cutoff: datetime) -> ColumnElement[bool]:
    # created_at narrows the scan through its index; finished_at is the actual rule
    return and_(Job.status.in_(_TERMINAL), Job.created_at < cutoff, Job.finished_at < cutoff)


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
