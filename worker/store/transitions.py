"""Every status change is a guarded update plus an event, in the caller's transaction.

A guarded update names the statuses it may start from (checked against the pure state machine)
and, where a worker holds the row, the lease token. When no row matches, the row has moved on
(a duplicate or late delivery, a cancellation) and the caller does nothing. :func:`move` is the
one place a status is written; what a move sets off once it commits (its webhook, its batch's
completion check, a discard, a dispatcher wake-up, the metrics) is said once, in
:func:`_follow_up`, and carried out through the ports (``worker.core.ports``). The steps'
claims and marks are in ``store.steps``, the reconciler's in ``store.recovery``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, insert, select, update
from sqlalchemy.orm import Session

from models import Batch, Job, JobEvent, JobImage
from models.base import utcnow
from worker.core import ports
from worker.core.states import ACTIVE, JobStatus, Moved, transition
from worker.db.aftercommit import call_after_commit
from worker.store import outbox, spend
from worker.store.jobs import add_event, update_with_event
from worker.telemetry import metrics


@dataclass(frozen=True)
class Claim:
    """A lease on a job: proof that this worker may perform the step until it expires."""

    job_id: uuid.UUID
    token: uuid.UUID
    #: The attempt the claim counts, and the job as read with it (submit and transfer claims).
    attempt: int = 0
    job: Job | None = field(default=None, compare=False, repr=False)
    #: The output indexes already stored when the claim was taken (transfer claims).
    stored: frozenset[int] = frozenset()
    #: The job's price this claim reserved on its budgets (submit claims).
    reservation: dict[str, Any] | None = field(default=None, compare=False)


def move(
    session: Session,
    *,
    job_id: uuid.UUID,
    sources: Iterable[JobStatus],
    target: JobStatus,
    event: str,
    values: dict[str, Any] | None = None,
    guard: ColumnElement[bool] | None = None,
    claim: Claim | None = None,
    detail: dict[str, Any] | None = None,
) -> Moved | None:
    """Move the job to ``target`` if it is in one of ``sources`` (and ``guard`` holds, and the
    row still carries ``claim``'s lease): the row, its event and (for an ending) its webhook
    row, in the caller's transaction. Returns what happened, or None when the row had moved
    on (a duplicate or late delivery, a cancellation)."""
    sources = list(sources)
    for source in sources:
        transition(source, target)  # a programming error if the state machine forbids it
    condition = and_(Job.id == job_id, Job.status.in_([s.value for s in sources]))
    if guard is not None:
        condition = and_(condition, guard)
    if claim is not None:
        condition = and_(condition, holds(claim))
    current: str | None = sources[0].value
    if len(sources) > 1:  # lock the row to learn which source it leaves from
        current = session.scalar(select(Job.status).where(condition).with_for_update())
    if current is None:
        return None
    source = JobStatus(current)
    values = dict(values or {})
    # the submit claim's own reservation (its lease proves the row still holds it) is cleared
    # by this very update; any other is read back from the row and cleared by the settlement
    settles_claim = source is JobStatus.SUBMITTING and claim is not None and claim.job is not None
    if settles_claim:
        values["reservation"] = None
    statement = (
        update(Job)
        .where(condition)
        .values(status=target.value, updated_at=utcnow(), **values)
        .returning(*_RETURNED)
    )
    moved = update_with_event(
        session, statement, event=event, from_status=source, to_status=target, detail=detail
    )
    if moved is None:
        return None
    if source is JobStatus.SUBMITTING:  # the submit ended: its reserved budget settles
        held = claim.reservation if claim is not None and settles_claim else moved.reservation
        spend.settle(
            session,
            job_id=job_id,
            outcome=_submit_outcome(target, values),
            reserved=spend.Reserved(held, moved.tenant, moved.batch_id),
            cleared=settles_claim,
        )
    polls = moved.poll_count if source is JobStatus.RUNNING else None
    happened = Moved(job_id, source, target, polls)
    _follow_up(session, happened, reports_to=(moved.batch_id, moved.callback_url))
    return happened


#: What a move's update returns: what the event, the settlement and the follow-up need, so
#: none of them reads the row again. (``reservation`` is used only when the update left it
#: as it was: only the claim out of ``queued`` sets it, and a move out of ``submitting``
#: clears it only with the submit claim that holds it.)
_RETURNED = (
    Job.id,
    Job.poll_count,
    Job.reservation,
    Job.tenant,
    Job.batch_id,
    Job.callback_url,
)


def _submit_outcome(target: JobStatus, values: dict[str, Any] | None) -> spend.Outcome:
    """Accepted when it runs; possibly paid when counted ambiguous, or cancelled while the
    call was out; otherwise (refused, never sent) nothing is owed."""
    if target is JobStatus.RUNNING:
        return "charged"
    if target is JobStatus.CANCELLED or "ambiguous_submits" in (values or {}):
        return "possible"
    return "released"


def _follow_up(
    session: Session, moved: Moved, *, reports_to: tuple[uuid.UUID | None, str | None]
) -> None:
    """What a transition sets off, said once. In the transaction: an ending's webhook row.
    After the outermost transaction commits (never on rollback): the webhook and the batch's
    completion check (``store.outbox``), the discard of orphaned outputs, a dispatcher wake-up
    when a prediction slot freed, and the transition's count."""
    if moved.ends:
        outbox.job_finished(
            session, job_id=moved.job_id, status=moved.target.value, reports_to=reports_to
        )
    if moved.orphans_outputs:
        call_after_commit(session, _send_discard, moved.job_id)
    metrics.transition(session, moved.source, moved.target, polls=moved.polls)
    if moved.frees_slot:
        call_after_commit(session, _wake_dispatcher)


def _send_discard(job_id: uuid.UUID) -> None:
    ports.current().send_step("discard", job_id)


def _wake_dispatcher() -> None:
    ports.current().wake_dispatcher()


# --- leases -------------------------------------------------------------------------------------


def lease_values(lease_s: float) -> tuple[uuid.UUID, dict[str, Any]]:
    token = uuid.uuid4()
    return token, {"lease_token": token, "lease_expires_at": utcnow() + timedelta(seconds=lease_s)}


def holds(claim: Claim) -> ColumnElement[bool]:
    return Job.lease_token == claim.token


def lease_released() -> dict[str, Any]:
    return {"lease_token": None, "lease_expires_at": None}


def ended(code: str, message: str, *, at: datetime | None = None) -> dict[str, Any]:
    """The columns of a job ending without success: its lease released, nothing more due, the
    named code and the reason."""
    return {
        **lease_released(),
        "error_code": code,
        "error_message": message,
        "finished_at": at or utcnow(),
        "next_action_at": None,
        "next_poll_at": None,
    }


# --- endings ------------------------------------------------------------------------------------


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
    values = ended(code, message)
    if ambiguous:
        values["ambiguous_submits"] = Job.ambiguous_submits + 1
    return (
        move(
            session,
            job_id=job_id,
            sources=sources,
            target=JobStatus.FAILED,
            event="failed",
            claim=claim,
            values=values,
            detail={"code": code, "message": message},
        )
        is not None
    )


def cancel(session: Session, *, job_id: uuid.UUID, reason: str) -> JobStatus | None:
    """Any active status -> cancelled; returns the status it left, None if already ended."""
    moved = move(
        session,
        job_id=job_id,
        sources=ACTIVE,
        target=JobStatus.CANCELLED,
        event="cancelled",
        values=ended("cancelled", reason),
        detail={"reason": reason},
    )
    return moved.source if moved else None


def cancel_queued_of_batch(session: Session, *, batch_id: uuid.UUID, reason: str) -> int:
    """Every ``queued`` job of the batch -> cancelled, in one guarded statement (a job a
    worker claims meanwhile is no longer queued: it is left to :func:`cancel`). Each gets its
    ``cancelled`` event; jobs with a callback URL their webhook; the batch its completion
    check after the commit. Returns how many were cancelled."""
    transition(JobStatus.QUEUED, JobStatus.CANCELLED)
    now = utcnow()
    rows = session.execute(
        update(Job)
        .where(Job.batch_id == batch_id, Job.status == JobStatus.QUEUED.value)
        .values(status=JobStatus.CANCELLED.value, updated_at=now, **ended("cancelled", reason))
        .returning(Job.id, Job.callback_url)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        return 0
    detail = {"reason": reason}
    session.execute(
        insert(JobEvent),
        [
            {
                "job_id": row.id,
                "at": now,
                "event": "cancelled",
                "from_status": JobStatus.QUEUED.value,
                "to_status": JobStatus.CANCELLED.value,
                "detail": detail,
            }
            for row in rows
        ],
    )
    for row in rows:
        if row.callback_url is not None:
            outbox.job_finished(session, job_id=row.id, status=JobStatus.CANCELLED.value)
    outbox.check_batch_after_commit(session, batch_id=batch_id)
    metrics.transition(session, JobStatus.QUEUED, JobStatus.CANCELLED, count=len(rows))
    return len(rows)


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
