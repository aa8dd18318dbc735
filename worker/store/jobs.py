"""The SQL of one job's rows: read it, insert it, log its events, record its images.

Status changes are not here: every one of them is a guarded update in ``store.transitions``
(and the step-specific ones in ``store.steps``, ``store.recovery``); ``update_with_event``
only runs such an update together with its event, in one statement on Postgres. ``touch``
and the image rows are plain writes that move no status.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import CTE, Row, Update, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import Job, JobEvent, JobImage, WebhookDelivery
from models.base import utcnow
from worker.core.states import UNSUCCESSFUL, JobStatus

# --- reads --------------------------------------------------------------------------------------


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def get_job_by_idempotency_key(session: Session, key: str) -> Job | None:
    return session.scalars(select(Job).where(Job.idempotency_key == key)).first()


def list_images(session: Session, job_id: uuid.UUID) -> list[JobImage]:
    query = select(JobImage).where(JobImage.job_id == job_id).order_by(JobImage.idx)
    return list(session.scalars(query))


def list_events(session: Session, job_id: uuid.UUID) -> list[JobEvent]:
    query = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    return list(session.scalars(query))


def stored_indexes(session: Session, job_id: uuid.UUID) -> set[int]:
    return set(session.scalars(select(JobImage.idx).where(JobImage.job_id == job_id)))


def count_by_status(session: Session, job_ids: Iterable[uuid.UUID]) -> dict[str, int]:
    query = select(Job.status, func.count()).where(Job.id.in_(list(job_ids))).group_by(Job.status)
    return {status: count for status, count in session.execute(query).all()}


def traceparents(session: Session, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """Each job's stored trace context (``worker.telemetry.tracing``; read only when tracing)."""
    query = select(Job.id, Job.traceparent).where(Job.id.in_(list(job_ids)))
    return {job_id: traceparent for job_id, traceparent in session.execute(query).all()}


def delivery_traceparent(
    session: Session, delivery_id: uuid.UUID
) -> tuple[uuid.UUID | None, str | None]:
    """The job of a webhook delivery and its trace context ((None, None) for a batch's)."""
    query = (
        select(Job.id, Job.traceparent)
        .join(WebhookDelivery, WebhookDelivery.job_id == Job.id)
        .where(WebhookDelivery.id == delivery_id)
    )
    row = session.execute(query).first()
    return (row[0], row[1]) if row else (None, None)


# --- writes -------------------------------------------------------------------------------------


def insert_job(
    session: Session,
    *,
    fields: dict[str, Any],
    priority: str,
    idempotency_key: str | None,
    deadline_at: datetime,
    dispatched: bool = False,
) -> Job:
    """A new queued job; ``dispatched`` when its submit message goes out after the commit."""
    now = utcnow()
    job = Job(
        id=uuid.uuid4(),
        status=JobStatus.QUEUED.value,
        priority=priority,
        idempotency_key=idempotency_key,
        deadline_at=deadline_at,
        next_action_at=now,
        dispatched_at=now if dispatched else None,
        created_at=now,
        updated_at=now,
        attempts=0,
        poll_count=0,
        poll_errors=0,
        transfer_attempts=0,
        ambiguous_submits=0,
        **fields,
    )
    session.add(job)
    session.flush()
    add_event(session, job_id=job.id, event="enqueued", to_status=JobStatus.QUEUED)
    return job


def add_event(
    session: Session,
    *,
    job_id: uuid.UUID,
    event: str,
    from_status: JobStatus | None = None,
    to_status: JobStatus | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    # one INSERT now, not an object for the unit of work to flush (pending rows flush first)
    session.execute(
        insert(JobEvent).values(
            job_id=job_id,
            at=utcnow(),
            event=event,
            detail=detail,
            from_status=from_status.value if from_status else None,
            to_status=to_status.value if to_status else None,
        )
    )


def update_with_event(
    session: Session,
    statement: Update,
    *,
    event: str,
    from_status: JobStatus | None = None,
    to_status: JobStatus | None = None,
    detail: dict[str, Any] | None = None,
) -> Row[Any] | None:
    """Run a guarded ``UPDATE jobs ... RETURNING jobs.id, ...`` and, when it matched, log the
    job's event; returns the returned row, or None (nothing matched, nothing logged).

    On Postgres both are one statement, one round trip: the update in a data-modifying CTE,
    the event inserted from its output (so no row, no event); elsewhere, two statements."""
    if session.get_bind().dialect.name != "postgresql":
        row = session.execute(statement).first()
        if row is not None:
            add_event(
                session,
                job_id=row.id,
                event=event,
                from_status=from_status,
                to_status=to_status,
                detail=detail,
            )
        return row
    moved = statement.cte("moved")
    logged = _logged(moved, event, from_status, to_status, detail)
    # Core, on the session's connection: the statement returns plain rows, so the ORM's
    # per-statement machinery adds nothing. Unlike an ORM update it leaves Job objects already
    # in the session as they were: every caller reads the job again by id (``get_job``
    # populates existing objects) or not at all.
    return session.connection().execute(select(moved).add_cte(logged)).first()


def update_job_with_event(
    session: Session, statement: Update, *, event: str, also: str | None = None
) -> tuple[Job, Any] | None:
    """:func:`update_with_event` for an update returning the whole job (``RETURNING jobs.*``,
    and the column named ``also``): the row is (the job as an object, that column)."""
    if session.get_bind().dialect.name != "postgresql":
        row = session.execute(statement).first()
        if row is not None:
            add_event(session, job_id=row[0].id, event=event)
    else:
        moved = statement.cte("moved")
        logged = _logged(moved, event, None, None, None)
        extra = [moved.c[also]] if also else []
        query = select(Job, *extra).from_statement(select(moved).add_cte(logged))
        row = session.execute(query).first()
    if row is None:
        return None
    values = tuple(row)
    return values[0], (values[1] if also else None)


def _logged(
    moved: CTE,
    event: str,
    from_status: JobStatus | None,
    to_status: JobStatus | None,
    detail: dict[str, Any] | None,
) -> CTE:
    """The INSERT of one event per row ``moved`` returns, as a CTE beside it."""
    columns = JobEvent.__table__.c
    rows = select(
        moved.c.id,
        literal(utcnow(), columns.at.type),
        literal(event, columns.event.type),
        literal(from_status.value if from_status else None, columns.from_status.type),
        literal(to_status.value if to_status else None, columns.to_status.type),
        literal(detail, columns.detail.type),
    )
    names = ["job_id", "at", "event", "from_status", "to_status", "detail"]
    return insert(JobEvent).from_select(names, rows).cte("logged")


def touch(
    session: Session, *, job_ids: list[uuid.UUID], event: str, detail: dict[str, Any] | None = None
) -> None:
    """Mark jobs as just handled (so the next pass leaves them alone) and log why."""
    if not job_ids:
        return
    session.execute(update(Job).where(Job.id.in_(job_ids)).values(updated_at=utcnow()))
    for job_id in job_ids:
        add_event(session, job_id=job_id, event=event, detail=detail)


def record_image(session: Session, *, values: dict[str, Any]) -> None:
    """Insert the image row, or overwrite the one for the same (job, index)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(JobImage).values(created_at=utcnow(), **values)
    changed = {k: statement.excluded[k] for k in values if k not in ("job_id", "idx")}
    session.execute(statement.on_conflict_do_update(index_elements=["job_id", "idx"], set_=changed))


#: The event that says a job's stored outputs were deleted (the reconciler sends the discard of
#: an unsuccessful job with outputs again until it is there).
DISCARDED = "outputs_discarded"


def discard_images(session: Session, *, job_id: uuid.UUID) -> bool:
    """Delete the image rows of a job that ended without success and record that its objects
    are gone (call it once they are); False if it has not ended so."""
    ended = session.scalar(select(Job.status).where(Job.id == job_id))
    if ended not in UNSUCCESSFUL:
        return False
    deleted = session.execute(delete(JobImage).where(JobImage.job_id == job_id)).rowcount  # type: ignore[attr-defined]
    add_event(session, job_id=job_id, event=DISCARDED, detail={"image_rows": deleted})
    return True
