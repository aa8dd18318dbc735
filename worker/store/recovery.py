"""The SQL of recovery (the reconciler): jobs whose next step is overdue, expired submit
leases, passed deadlines.

Postgres is the record and a Celery message only a nudge: what a lost message or a dead worker
left behind is found here, from the rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from models import Job, JobEvent
from worker.core.states import UNSUCCESSFUL, JobStatus
from worker.store.jobs import DISCARDED
from worker.store.transitions import ended, lease_released, move

#: The statuses the reconciler ends at the deadline: those without a prediction. A ``running``
#: job is asked once more by its poll (a finished prediction is paid for and stored), and a
#: ``transferring`` one is copied for as long as its output URLs live, deadline or not.
BEFORE_OUTPUTS = (JobStatus.QUEUED, JobStatus.SUBMITTING)


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)


def stale_jobs(
    session: Session, *, status: JobStatus, before: datetime, now: datetime, limit: int
) -> list[uuid.UUID]:
    """Jobs in ``status`` whose next step was due before ``before`` and that nobody touched
    since, and whose lease (if any) has expired: their message was lost or their worker died."""
    due = Job.next_action_at <= before
    if status is JobStatus.SUBMITTING:  # the lease alone says whether its worker is gone
        due = Job.lease_expires_at < now
    query = (
        select(Job.id)
        .where(Job.status == status.value, due, Job.updated_at <= before, _lease_free(now))
        .order_by(Job.next_action_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def expire_submit_lease(
    session: Session, *, job_id: uuid.UUID, now: datetime, retry: bool, reason: str
) -> bool:
    """submitting with an expired lease: its worker died, maybe after the request left.

    Counted as an ambiguous submission; back to queued when ``retry``, else failed."""
    guard = Job.lease_expires_at < now
    values: dict[str, Any] = {
        **lease_released(),
        "ambiguous_submits": Job.ambiguous_submits + 1,
        "error_message": reason,
    }
    if retry:
        values["next_action_at"] = now
        target, event = JobStatus.QUEUED, "submit_lease_expired"
    else:
        values.update(error_code="ambiguous_submit", finished_at=now, next_action_at=None)
        target, event = JobStatus.FAILED, "failed"
    return (
        move(
            session,
            job_id=job_id,
            sources=[JobStatus.SUBMITTING],
            target=target,
            event=event,
            guard=guard,
            values=values,
            detail={"reason": reason},
        )
        is not None
    )


def undiscarded_jobs(
    session: Session, *, ended_before: datetime, ended_after: datetime, limit: int
) -> list[uuid.UUID]:
    """Jobs that ended without success after their outputs were known (some may have been
    stored) and whose discard has not happened: its message was lost, or it failed."""
    discarded = select(JobEvent.id).where(JobEvent.job_id == Job.id, JobEvent.event == DISCARDED)
    query = (
        select(Job.id)
        .where(
            Job.status.in_(UNSUCCESSFUL),
            Job.outputs.is_not(None),
            Job.finished_at < ended_before,
            Job.finished_at > ended_after,
            ~discarded.exists(),
        )
        .limit(limit)
    )
    return list(session.scalars(query))


def overdue_jobs(session: Session, *, now: datetime, limit: int) -> list[uuid.UUID]:
    """Jobs without a prediction past their deadline that no worker currently holds."""
    query = (
        select(Job.id)
        .where(Job.status.in_(BEFORE_OUTPUTS), Job.deadline_at < now, _lease_free(now))
        .limit(limit)
    )
    return list(session.scalars(query))


def expire_deadline(session: Session, *, job_id: uuid.UUID, now: datetime) -> bool:
    """Active -> failed/deadline_exceeded, if the deadline passed and no lease is held."""
    values = ended("deadline_exceeded", "the job did not finish before its deadline", at=now)
    return (
        move(
            session,
            job_id=job_id,
            sources=BEFORE_OUTPUTS,
            target=JobStatus.FAILED,
            event="failed",
            guard=and_(Job.deadline_at < now, _lease_free(now)),
            values=values,
            detail={"code": "deadline_exceeded"},
        )
        is not None
    )
