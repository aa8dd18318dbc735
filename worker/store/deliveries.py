"""The SQL of webhook deliveries: record an event (once), lease it, log each attempt.

A delivery is a row in an outbox written in the transaction that made the change it reports.
Senders take a short lease on the row before posting, so a duplicate task posts nothing; the
outcome of every attempt is appended to ``webhook_attempts``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import Job, JobEvent, WebhookAttempt, WebhookDelivery


def job_reporting(session: Session, job_id: uuid.UUID) -> tuple[uuid.UUID | None, str | None]:
    """(batch id, callback URL) of a job: what its terminal state must report to."""
    row = session.execute(select(Job.batch_id, Job.callback_url).where(Job.id == job_id)).first()
    return (row[0], row[1]) if row else (None, None)


def retries_of(session: Session, job_id: uuid.UUID) -> int:
    """How many times an operator sent the job back to the queue (each run ends anew)."""
    query = select(func.count()).where(JobEvent.job_id == job_id, JobEvent.event == "retried")
    return int(session.scalar(query) or 0)


def record_delivery(
    session: Session,
    *,
    dedup_key: str,
    event: str,
    url: str,
    now: datetime,
    job_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Add a pending delivery unless one with ``dedup_key`` exists; return its id if added."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(WebhookDelivery)
        .values(
            id=uuid.uuid4(),
            dedup_key=dedup_key,
            event=event,
            url=url,
            job_id=job_id,
            batch_id=batch_id,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(WebhookDelivery.id)
    )
    return session.scalar(statement)


def claim(
    session: Session, *, delivery_id: uuid.UUID, now: datetime, lease_s: float
) -> WebhookDelivery | None:
    """Lease a pending, due delivery for one attempt (counted); None if not ours to send."""
    statement = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= now,
            _lease_free(now),
        )
        .values(
            lease_expires_at=now + timedelta(seconds=lease_s),
            updated_at=now,
            attempts=WebhookDelivery.attempts + 1,
        )
        .returning(WebhookDelivery.id)
    )
    if session.execute(statement).first() is None:
        return None
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def _lease_free(now: datetime) -> Any:
    return or_(WebhookDelivery.lease_expires_at.is_(None), WebhookDelivery.lease_expires_at < now)


def record_attempt(
    session: Session,
    *,
    delivery: WebhookDelivery,
    now: datetime,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    outcome: str,
    retry_at: datetime | None,
) -> None:
    """Log the attempt and move the delivery: ``delivered``, ``failed`` or still ``pending``."""
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempt=delivery.attempts,
            at=now,
            url=delivery.url,
            event=delivery.event,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
        )
    )
    values: dict[str, Any] = {
        "status": outcome,
        "lease_expires_at": None,
        "updated_at": now,
        "last_status_code": status_code,
        "last_error": error,
        "next_attempt_at": retry_at,
    }
    if outcome == "delivered":
        values["delivered_at"] = now
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
    )


def due(session: Session, *, now: datetime, stale_s: float, limit: int) -> list[uuid.UUID]:
    """Pending deliveries overdue by ``stale_s`` that nobody touched meanwhile (their message
    was lost, or their retry was too far off for a countdown); touched, so that the next sweep
    leaves them alone while their message waits in the queue."""
    before = now - timedelta(seconds=stale_s)
    query = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == "pending",
            WebhookDelivery.next_attempt_at <= before,
            WebhookDelivery.updated_at <= before,
            _lease_free(now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(query))
    if ids:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).values(updated_at=now)
        )
    return ids


def deliveries(
    session: Session, *, job_id: uuid.UUID | None = None, batch_id: uuid.UUID | None = None
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).order_by(WebhookDelivery.created_at)
    if job_id is not None:
        query = query.where(WebhookDelivery.job_id == job_id)
    if batch_id is not None:
        query = query.where(WebhookDelivery.batch_id == batch_id)
    return list(session.scalars(query))


def attempts(session: Session, delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    query = (
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.id)
    )
    return list(session.scalars(query))


# --- for people: listing and redelivering -------------------------------------------------------


def deliveries_page(
    session: Session,
    *,
    status: str | None,
    job_id: uuid.UUID | None,
    batch_id: uuid.UUID | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[WebhookDelivery]:
    """Deliveries newest first (keyset on created_at, id), filtered."""
    query = select(WebhookDelivery)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if job_id is not None:
        query = query.where(WebhookDelivery.job_id == job_id)
    if batch_id is not None:
        query = query.where(WebhookDelivery.batch_id == batch_id)
    if before is not None:
        query = query.where(
            tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(*before)
        )
    order = (WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    return list(session.scalars(query.order_by(*order).limit(limit)))


def attempts_of(
    session: Session, delivery_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[WebhookAttempt]]:
    found: dict[uuid.UUID, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if not delivery_ids:
        return found
    query = (
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.id)
    )
    for attempt in session.scalars(query):
        found[attempt.delivery_id].append(attempt)
    return found


def get_delivery(session: Session, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def failed_ids(
    session: Session, *, job_id: uuid.UUID | None, batch_id: uuid.UUID | None
) -> list[uuid.UUID]:
    """Ids of failed deliveries (of one job, one batch), oldest first."""
    query = select(WebhookDelivery.id).where(WebhookDelivery.status == "failed")
    if job_id is not None:
        query = query.where(WebhookDelivery.job_id == job_id)
    if batch_id is not None:
        query = query.where(WebhookDelivery.batch_id == batch_id)
    return list(session.scalars(query.order_by(WebhookDelivery.created_at)))


def reopen(session: Session, *, delivery_ids: list[uuid.UUID], now: datetime) -> list[uuid.UUID]:
    """Make these deliveries pending and due now (a redelivery: the same row, so the same
    event id), unless an attempt holds them right now. Returns the ids reopened."""
    if not delivery_ids:
        return []
    statement = (
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(delivery_ids), _lease_free(now))
        .values(status="pending", next_attempt_at=now, updated_at=now, lease_expires_at=None)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(statement))
