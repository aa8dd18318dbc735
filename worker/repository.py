"""All SQL lives here. Every status change is a guarded update plus an event, in one transaction.

A guarded update names the statuses it may start from (checked against the pure state machine)
and, where a worker holds the row, the lease token. When no row matches, the row has moved on
(a duplicate or late delivery, a cancellation) and the caller does nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import ACTIVE_STATUSES, Batch, Job, JobEvent, JobImage
from models.base import utcnow
from worker import fleet, metrics, outbox
from worker.aftercommit import call_after_commit
from worker.limits import Admission, Limits
from worker.states import JobStatus, transition


@dataclass(frozen=True)
class Claim:
    """A lease on a job: proof that this worker may perform the step until it expires."""

    job_id: uuid.UUID
    token: uuid.UUID
    #: The attempt the claim counts, and the job as read with it (submit and transfer claims).
    attempt: int = 0
    job: Job | None = field(default=None, compare=False, repr=False)


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


def _move(
    session: Session,
    *,
    job_id: uuid.UUID,
    sources: Iterable[JobStatus],
    target: JobStatus,
    event: str,
    values: dict[str, Any] | None = None,
    guard: ColumnElement[bool] | None = None,
    detail: dict[str, Any] | None = None,
) -> JobStatus | None:
    """Move the job to ``target`` if it is in one of ``sources``; return the status it left."""
    sources = list(sources)
    for source in sources:
        transition(source, target)  # a programming error if the state machine forbids it
    condition = and_(Job.id == job_id, Job.status.in_([s.value for s in sources]))
    if guard is not None:
        condition = and_(condition, guard)
    current: str | None = sources[0].value
    if len(sources) > 1:  # lock the row to learn which source it leaves from
        current = session.scalar(select(Job.status).where(condition).with_for_update())
    if current is None:
        return None
    statement = (
        update(Job)
        .where(condition)
        .values(status=target.value, updated_at=utcnow(), **(values or {}))
        .returning(Job.poll_count)
    )
    moved = session.execute(statement).first()
    if moved is None:
        return None
    source = JobStatus(current)
    add_event(
        session, job_id=job_id, event=event, from_status=source, to_status=target, detail=detail
    )
    if target.terminal:  # its webhook row, and its batch's completion check after commit
        outbox.job_finished(session, job_id=job_id, status=target.value)
    if source is JobStatus.TRANSFERRING and target is not JobStatus.SUCCEEDED:
        # outputs copied (or half copied) before the job ended belong to nobody now
        call_after_commit(session, _send_discard, job_id)
    metrics.transition(
        session, source, target, polls=moved.poll_count if source is JobStatus.RUNNING else None
    )
    if source.value in fleet.IN_FLIGHT and target.value not in fleet.IN_FLIGHT:
        call_after_commit(session, _capacity_freed)  # a slot at the provider is free
    return source


def _capacity_freed() -> None:
    from worker.dispatch import wake_dispatcher

    wake_dispatcher()


def _send_discard(job_id: uuid.UUID) -> None:
    from worker.tasks import send_step

    send_step("discard", job_id)


def _lease_values(lease_s: float) -> tuple[uuid.UUID, dict[str, Any]]:
    token = uuid.uuid4()
    return token, {"lease_token": token, "lease_expires_at": utcnow() + timedelta(seconds=lease_s)}


def claim_for_submit(
    session: Session, *, job_id: uuid.UUID, lease_s: float, limits: Limits | None = None
) -> Claim | Admission | None:
    """queued -> submitting, if the job is due and the fleet's limits let it go now; counts
    the attempt and takes the fleet's token in the same transaction.

    Returns the claim; the refusal (the job stays queued for the dispatcher, nothing counted);
    or None when the job is not due, already moved on or cancelled."""
    now = utcnow()
    job = get_job(session, job_id)  # read before the fleet's lock is taken, not while held
    if (
        job is None
        or job.status != JobStatus.QUEUED
        or (job.next_action_at is not None and job.next_action_at > now)
    ):
        return None
    session.expunge(job)  # the request as it was read; the claim below counts the attempt
    admission = fleet.admit_submission(
        session, priority=job.priority, limits=limits or fleet.current_limits()
    )
    if not admission.admitted:  # back to the dispatcher's queue; nothing counted
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
            .values(dispatched_at=None)
        )
        return admission
    token, values = _lease_values(lease_s)
    due = or_(Job.next_action_at.is_(None), Job.next_action_at <= now)
    moved = _move(
        session,
        job_id=job_id,
        sources=[JobStatus.QUEUED],
        target=JobStatus.SUBMITTING,
        event="submit_started",
        guard=due,
        values={**values, "attempts": Job.attempts + 1, "dispatched_at": None},
        detail={"probe": True} if admission.probe else None,
    )
    if not moved:
        return None  # the token stays in the bucket
    fleet.take(session, admission)
    return Claim(job_id, token, attempt=job.attempts + 1, job=job)


def _holds(claim: Claim) -> ColumnElement[bool]:
    return Job.lease_token == claim.token


def _release() -> dict[str, Any]:
    return {"lease_token": None, "lease_expires_at": None}


def mark_running(
    session: Session,
    *,
    claim: Claim,
    prediction_id: str,
    provider_status: str,
    next_poll_at: datetime,
) -> bool:
    """submitting -> running, storing the prediction id in the same transaction."""
    values = {
        **_release(),
        "prediction_id": prediction_id,
        "provider_status": provider_status,
        "submitted_at": utcnow(),
        "next_poll_at": next_poll_at,
        "next_action_at": next_poll_at,
    }
    return (
        _move(
            session,
            job_id=claim.job_id,
            sources=[JobStatus.SUBMITTING],
            target=JobStatus.RUNNING,
            event="submitted",
            guard=_holds(claim),
            values=values,
            detail={"prediction_id": prediction_id},
        )
        is not None
    )


def requeue_submit(
    session: Session,
    *,
    claim: Claim,
    not_before: datetime,
    reason: str,
    ambiguous: bool,
    refund_attempt: bool = False,
) -> bool:
    """submitting -> queued, to be tried again at ``not_before``."""
    values: dict[str, Any] = {
        **_release(),
        "next_action_at": not_before,
        "error_message": reason,
        "dispatched_at": None,
    }
    if ambiguous:
        values["ambiguous_submits"] = Job.ambiguous_submits + 1
    if refund_attempt:
        values["attempts"] = Job.attempts - 1
    detail = {"reason": reason, "retry_at": not_before.isoformat(), "ambiguous": ambiguous}
    return (
        _move(
            session,
            job_id=claim.job_id,
            sources=[JobStatus.SUBMITTING],
            target=JobStatus.QUEUED,
            event="submit_retry",
            guard=_holds(claim),
            values=values,
            detail=detail,
        )
        is not None
    )


def fail(
    session: Session,
    *,
    job_id: uuid.UUID,
    sources: Iterable[JobStatus],
    code: str,
    message: str,
    claim: Claim | None = None,
    ambiguous: bool = False,
) -> bool:
    """Any active status -> failed, recording the named code and the reason."""
    values: dict[str, Any] = {
        **_release(),
        "error_code": code,
        "error_message": message,
        "finished_at": utcnow(),
        "next_action_at": None,
        "next_poll_at": None,
    }
    if ambiguous:
        values["ambiguous_submits"] = Job.ambiguous_submits + 1
    guard = _holds(claim) if claim else None
    return (
        _move(
            session,
            job_id=job_id,
            sources=sources,
            target=JobStatus.FAILED,
            event="failed",
            guard=guard,
            values=values,
            detail={"code": code, "message": message},
        )
        is not None
    )


def cancel(session: Session, *, job_id: uuid.UUID, reason: str) -> JobStatus | None:
    """Any active status -> cancelled; returns the status it left, None if already ended."""
    values = {
        **_release(),
        "finished_at": utcnow(),
        "next_action_at": None,
        "next_poll_at": None,
        "error_code": "cancelled",
        "error_message": reason,
    }
    sources = [JobStatus(s) for s in ACTIVE_STATUSES]
    return _move(
        session,
        job_id=job_id,
        sources=sources,
        target=JobStatus.CANCELLED,
        event="cancelled",
        values=values,
        detail={"reason": reason},
    )


def record_poll(
    session: Session,
    *,
    job_id: uuid.UUID,
    provider_status: str,
    next_poll_at: datetime,
    error: str | None = None,
    counts: bool = True,
) -> bool:
    """Count a poll of a running job and when the next one is due (not a transition).

    An ``error`` is recorded; it spends the poll error budget unless ``counts`` is False (a
    rate limit or a refused key is not the job's fault)."""
    values: dict[str, Any] = {
        "provider_status": provider_status,
        "next_poll_at": next_poll_at,
        "next_action_at": next_poll_at,
        "poll_count": Job.poll_count + 1,
        "updated_at": utcnow(),
    }
    if error:
        values["error_message"] = error
        if counts:
            values["poll_errors"] = Job.poll_errors + 1
    statement = (
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING.value).values(**values)
    )
    return session.execute(statement).rowcount == 1  # type: ignore[attr-defined]


def mark_generated(
    session: Session,
    *,
    job_id: uuid.UUID,
    provider_status: str,
    outputs: list[str],
    nsfw: list[bool],
) -> bool:
    """running -> transferring, storing the output URLs to copy."""
    now = utcnow()
    values = {
        "provider_status": provider_status,
        "outputs": outputs,
        "nsfw": nsfw,
        "generated_at": now,
        "next_poll_at": None,
        "next_action_at": now,
        "poll_count": Job.poll_count + 1,
        "error_message": None,
    }
    return (
        _move(
            session,
            job_id=job_id,
            sources=[JobStatus.RUNNING],
            target=JobStatus.TRANSFERRING,
            event="generated",
            values=values,
            detail={"outputs": len(outputs)},
        )
        is not None
    )


def claim_for_transfer(session: Session, *, job_id: uuid.UUID, lease_s: float) -> Claim | None:
    """Take the transfer lease of a transferring job whose lease is free or expired; the claim
    carries the job as the update left it (its attempt counted)."""
    token, values = _lease_values(lease_s)
    now = utcnow()
    statement = (
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.TRANSFERRING.value,
            or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
            or_(Job.next_action_at.is_(None), Job.next_action_at <= now),
        )
        .values(**values, transfer_attempts=Job.transfer_attempts + 1, updated_at=now)
        .returning(Job)
    )
    job = session.scalars(statement).first()
    if job is None:
        return None
    add_event(session, job_id=job_id, event="transfer_started")
    return Claim(job_id, token, attempt=job.transfer_attempts, job=job)


def release_transfer(session: Session, *, claim: Claim, not_before: datetime, reason: str) -> bool:
    """Give the transfer lease back, to be tried again at ``not_before``."""
    statement = (
        update(Job)
        .where(Job.id == claim.job_id, _holds(claim), Job.status == JobStatus.TRANSFERRING.value)
        .values(**_release(), next_action_at=not_before, error_message=reason, updated_at=utcnow())
    )
    if session.execute(statement).rowcount != 1:  # type: ignore[attr-defined]
        return False
    add_event(
        session,
        job_id=claim.job_id,
        event="transfer_retry",
        detail={"reason": reason, "retry_at": not_before.isoformat()},
    )
    return True


def renew_transfer_lease(session: Session, *, claim: Claim, lease_s: float) -> bool:
    """Extend the transfer lease before the next output; False if the job moved on or the
    lease was lost (cancelled, or taken over after it expired)."""
    statement = (
        update(Job)
        .where(Job.id == claim.job_id, _holds(claim), Job.status == JobStatus.TRANSFERRING.value)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
    )
    return session.execute(statement).rowcount == 1  # type: ignore[attr-defined]


def record_image(session: Session, *, values: dict[str, Any]) -> None:
    """Insert the image row, or overwrite the one for the same (job, index)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(JobImage).values(created_at=utcnow(), **values)
    changed = {k: statement.excluded[k] for k in values if k not in ("job_id", "idx")}
    session.execute(statement.on_conflict_do_update(index_elements=["job_id", "idx"], set_=changed))


def discard_images(session: Session, *, job_id: uuid.UUID) -> bool:
    """Delete the image rows of a job that ended without success; False if it has not."""
    ended = session.scalar(select(Job.status).where(Job.id == job_id))
    if ended not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return False
    session.execute(delete(JobImage).where(JobImage.job_id == job_id))
    return True


def mark_succeeded(session: Session, *, claim: Claim) -> bool:
    """transferring -> succeeded, only for the holder of the transfer lease."""
    values = {
        **_release(),
        "finished_at": utcnow(),
        "next_action_at": None,
        "error_code": None,
        "error_message": None,
    }
    return (
        _move(
            session,
            job_id=claim.job_id,
            sources=[JobStatus.TRANSFERRING],
            target=JobStatus.SUCCEEDED,
            event="succeeded",
            guard=_holds(claim),
            values=values,
        )
        is not None
    )


# --- dispatch -----------------------------------------------------------------------------------


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
) -> list[uuid.UUID]:
    """The next jobs to send: a batch's in line order, loose jobs oldest first."""
    if limit <= 0:
        return []
    condition = _dispatchable(now, lost_before)
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


# --- recovery (the reconciler) ------------------------------------------------------------------


def try_singleton_lock(session: Session, name: str) -> bool:
    """Take a transaction-scoped lock so only one holder of ``name`` (a reconciler pass, a
    dispatch cycle) runs at a time across the fleet (Postgres)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(key))))


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


def touch(
    session: Session, *, job_ids: list[uuid.UUID], event: str, detail: dict[str, Any] | None = None
) -> None:
    """Mark jobs as just handled (so the next pass leaves them alone) and log why."""
    if not job_ids:
        return
    session.execute(update(Job).where(Job.id.in_(job_ids)).values(updated_at=utcnow()))
    for job_id in job_ids:
        add_event(session, job_id=job_id, event=event, detail=detail)


def expire_submit_lease(
    session: Session, *, job_id: uuid.UUID, now: datetime, retry: bool, reason: str
) -> bool:
    """submitting with an expired lease: its worker died, maybe after the request left.

    Counted as an ambiguous submission; back to queued when ``retry``, else failed."""
    guard = Job.lease_expires_at < now
    values: dict[str, Any] = {
        **_release(),
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
        _move(
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


def overdue_jobs(session: Session, *, now: datetime, limit: int) -> list[uuid.UUID]:
    """Active jobs past their deadline that no worker currently holds."""
    query = (
        select(Job.id)
        .where(Job.status.in_(ACTIVE_STATUSES), Job.deadline_at < now, _lease_free(now))
        .limit(limit)
    )
    return list(session.scalars(query))


def expire_deadline(session: Session, *, job_id: uuid.UUID, now: datetime) -> bool:
    """Active -> failed/deadline_exceeded, if the deadline passed and no lease is held."""
    values = {
        **_release(),
        "error_code": "deadline_exceeded",
        "finished_at": now,
        "error_message": "the job did not finish before its deadline",
        "next_action_at": None,
        "next_poll_at": None,
    }
    sources = [JobStatus(s) for s in ACTIVE_STATUSES]
    return (
        _move(
            session,
            job_id=job_id,
            sources=sources,
            target=JobStatus.FAILED,
            event="failed",
            guard=and_(Job.deadline_at < now, _lease_free(now)),
            values=values,
            detail={"code": "deadline_exceeded"},
        )
        is not None
    )


def count_redelivery(session: Session, *, job_id: uuid.UUID, limit: int) -> bool:
    """A poll message came back after its worker was lost: count it as a poll error.

    Returns False when the job has used up its poll error budget (a poison job)."""
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING.value)
        .values(poll_errors=Job.poll_errors + 1, updated_at=utcnow())
        .returning(Job.poll_errors)
    )
    errors = session.scalar(statement)
    return errors is None or errors <= limit


# --- operator retry -----------------------------------------------------------------------------

#: What an operator retry resets: a fresh start, except ``ambiguous_submits`` (paid history).
_RETRY_RESET: dict[str, Any] = {
    "attempts": 0,
    "poll_count": 0,
    "poll_errors": 0,
    "transfer_attempts": 0,
    "error_code": None,
    "error_message": None,
    "prediction_id": None,
    "provider_status": None,
    "outputs": None,
    "nsfw": None,
    "lease_token": None,
    "lease_expires_at": None,
    "next_poll_at": None,
    "submitted_at": None,
    "generated_at": None,
    "finished_at": None,
    "dispatched_at": None,
}


def retry_failed(
    session: Session,
    *,
    job_ids: Iterable[uuid.UUID],
    deadline_at: datetime,
    reason: str = "operator retry",
) -> list[uuid.UUID]:
    """failed -> queued (an operator retry) for those of ``job_ids`` still failed.

    Counters, outcome and prediction are reset, the deadline renewed and stored-image rows of
    the old attempt dropped (the new prediction's outputs overwrite the same keys). Each move
    is recorded as a ``retried`` event. Returns the ids that moved.
    """
    transition(JobStatus.FAILED, JobStatus.QUEUED)
    failed = Job.status == JobStatus.FAILED.value
    rows = session.execute(
        select(Job.id, Job.error_code, Job.attempts)
        .where(Job.id.in_(list(job_ids)), failed)
        .with_for_update()
    ).all()
    ids = [row.id for row in rows]
    if not ids:
        return []
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.id.in_(ids), failed)
        .values(
            status=JobStatus.QUEUED.value,
            deadline_at=deadline_at,
            next_action_at=now,
            updated_at=now,
            **_RETRY_RESET,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(JobImage).where(JobImage.job_id.in_(ids)))
    # a finished batch with a retried job is open again (the dispatcher looks at open batches)
    session.execute(
        update(Batch)
        .where(Batch.id.in_(select(Job.batch_id).where(Job.id.in_(ids), Job.batch_id.is_not(None))))
        .values(completed_at=None)
        .execution_options(synchronize_session=False)
    )
    for row in rows:
        add_event(
            session,
            job_id=row.id,
            event="retried",
            from_status=JobStatus.FAILED,
            to_status=JobStatus.QUEUED,
            detail={"reason": reason, "previous_code": row.error_code, "attempts": row.attempts},
        )
        metrics.transition(session, JobStatus.FAILED, JobStatus.QUEUED)
    return ids
