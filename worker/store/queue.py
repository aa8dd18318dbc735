"""SQL for operators: the queue at a glance, job listings and retry candidates.

What runs at scrape time stays small: the active jobs only, which the partial index
``ix_jobs_active_next`` covers, under a statement timeout. Whole-table counts are for the
``status`` command, run by a person. Status changes themselves (an operator's retry included)
are in ``store.transitions``; retention's SQL is in ``store.pruning``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.orm import Session

from models import Job
from worker.core.states import ACTIVE, JobStatus


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
        .where(Job.status.in_(ACTIVE))
        .group_by(Job.status, Job.priority)
    )
    active = {status.value: 0 for status in ACTIVE}
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
