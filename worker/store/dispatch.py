"""The SQL of the dispatcher: which queued jobs to send next, and which were sent.

Jobs wait in the table, not in the broker; ``dispatched_at`` records that a submit message went
out for a queued job, so a message lost on the way is sent again after
``IMAGEGEN_DISPATCH_LOST_AFTER_S``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from models import Batch, Job
from worker.core.states import JobStatus
from worker.store.jobs import touch


def _dispatchable(now: datetime, lost_before: datetime) -> ColumnElement[bool]:
    """Queued, due, and not sent to a worker recently (or sent and never picked up)."""
    return and_(
        Job.status == JobStatus.QUEUED.value,
        Job.next_action_at <= now,
        or_(Job.dispatched_at.is_(None), Job.dispatched_at < lost_before),
    )


def count_outstanding(session: Session, *, since: datetime) -> int:
    """Submit messages sent since ``since`` that no worker has taken yet."""
    query = select(func.count()).where(
        Job.status == JobStatus.QUEUED.value, Job.dispatched_at >= since
    )
    return int(session.scalar(query) or 0)


def dispatchable_jobs(
    session: Session,
    *,
    priority: str,
    batch_id: uuid.UUID | None,
    now: datetime,
    lost_before: datetime,
    limit: int,
    offset: int = 0,
    tenant: str | None = None,
) -> list[uuid.UUID]:
    """The next jobs to send: a batch's in line order, loose jobs (of ``tenant``, if given)
    oldest first."""
    if limit <= 0:
        return []
    condition = _dispatchable(now, lost_before)
    if tenant is not None:
        condition = and_(condition, Job.tenant == tenant)
    if batch_id is None:
        query = (
            select(Job.id)
            .where(condition, Job.priority == priority, Job.batch_id.is_(None))
            .order_by(Job.next_action_at)
        )
    else:
        query = select(Job.id).where(condition, Job.batch_id == batch_id).order_by(Job.batch_index)
    return list(session.scalars(query.offset(offset).limit(limit)))


def open_batches(session: Session, *, limit: int) -> list[uuid.UUID]:
    """Batches that may still have queued jobs, oldest first."""
    query = (
        select(Batch.id).where(Batch.completed_at.is_(None)).order_by(Batch.created_at).limit(limit)
    )
    return list(session.scalars(query))


def mark_dispatched(session: Session, *, job_ids: list[uuid.UUID], at: datetime | None) -> None:
    """Record that submit messages went out for these queued jobs (None: they did not).

    Jobs that had been sent before and never picked up (their message was lost: a flushed
    broker, a killed worker) get a ``redriven`` event."""
    if job_ids and at is not None:
        lost = list(
            session.scalars(
                select(Job.id).where(Job.id.in_(job_ids), Job.dispatched_at.is_not(None))
            )
        )
        touch(session, job_ids=lost, event="redriven", detail={"step": "submit"})
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED.value)
            .values(dispatched_at=at)
            .execution_options(synchronize_session=False)
        )
