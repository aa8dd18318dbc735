"""The claims and marks of the pipeline's steps: submit, poll, transfer.

A claim takes a lease on the job (a token and an expiry) and proves that this worker may
perform the step; a mark writes the step's outcome, guarded by that lease. The submit claim
also passes the fleet's gate (``store.fleet``) and takes its token in the same transaction,
then the tenant's in-flight cap and budgets (``store.spend`` reserves the job's price).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from models import Job, JobImage
from models.base import utcnow
from worker.core import tenancy
from worker.core.limits import Admission, Limits, Refused
from worker.core.settings import get_settings
from worker.core.states import JobStatus
from worker.store import fleet, spend, tenants
from worker.store.jobs import add_event, get_job, stored_indexes, update_job_with_event
from worker.store.transitions import Claim, holds, lease_released, lease_values, move


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
    reservation, rate_tokens = None, None
    if admission.admitted:
        admission, reservation, rate_tokens = _tenant_admission(session, job, admission, now)
    if not admission.admitted:  # back to the dispatcher's queue; nothing counted
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED.value)
            .values(dispatched_at=None)
        )
        return admission
    token, values = lease_values(lease_s)
    due = or_(Job.next_action_at.is_(None), Job.next_action_at <= now)
    moved = move(
        session,
        job_id=job_id,
        sources=[JobStatus.QUEUED],
        target=JobStatus.SUBMITTING,
        event="submit_started",
        guard=due,
        values={
            **values,
            "attempts": Job.attempts + 1,
            "dispatched_at": None,
            "reservation": reservation,
        },
        detail={"probe": True} if admission.probe else None,
    )
    if not moved:
        if reservation:
            spend.release(session, reservation)
        return None  # the token stays in the bucket
    fleet.take(session, admission)
    if rate_tokens is not None:
        tenants.take_rate_token(session, tenant=job.tenant, tokens=rate_tokens, at=now)
    return Claim(job_id, token, attempt=job.attempts + 1, job=job, reservation=reservation)


def _tenant_admission(
    session: Session, job: Job, admission: Admission, now: datetime
) -> tuple[Admission, dict[str, Any] | None, float | None]:
    """The tenant's own limits, under the fleet's lock: its in-flight cap, its submit rate
    (the tokens its bucket will hold, written once the job moved), then its budgets and its
    batch's (the job's price reserved on them, or a refusal)."""
    tenant = tenants.get_tenant(session, job.tenant)
    cap = tenant.max_in_flight if tenant is not None else None
    if cap is not None and tenants.in_flight(session, job.tenant) >= cap:
        return replace(admission, refused=Refused.TENANT_IN_FLIGHT, retry_in_s=1.0), None, None
    rate = tenants.rate_state(tenant) if tenant is not None else None
    tokens, wait = rate.take(now) if rate is not None else (None, 0.0)
    if wait > 0:
        return replace(admission, refused=Refused.TENANT_RATE, retry_in_s=wait), None, None
    price = tenancy.price_of(get_settings().price_table, job.resolution)
    reservation = spend.reserve(
        session, job_id=job.id, tenant=job.tenant, batch_id=job.batch_id, price=price, now=now
    )
    if reservation is None:
        return replace(admission, refused=Refused.BUDGET, retry_in_s=60.0), None, None
    return admission, reservation, tokens


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
        **lease_released(),
        "prediction_id": prediction_id,
        "provider_status": provider_status,
        "submitted_at": utcnow(),
        "next_poll_at": next_poll_at,
        "next_action_at": next_poll_at,
    }
    return (
        move(
            session,
            job_id=claim.job_id,
            sources=[JobStatus.SUBMITTING],
            target=JobStatus.RUNNING,
            event="submitted",
            claim=claim,
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
        **lease_released(),
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
        move(
            session,
            job_id=claim.job_id,
            sources=[JobStatus.SUBMITTING],
            target=JobStatus.QUEUED,
            event="submit_retry",
            claim=claim,
            values=values,
            detail=detail,
        )
        is not None
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
    refused: int = 0,
) -> bool:
    """running -> transferring, storing the output URLs to copy (``refused``: how many more the
    provider answered, over ``IMAGEGEN_MAX_OUTPUTS``, recorded in the event)."""
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
    detail: dict[str, object] = {"outputs": len(outputs)}
    if refused:
        detail |= {"refused_outputs": refused, "reason": "over IMAGEGEN_MAX_OUTPUTS"}
    return (
        move(
            session,
            job_id=job_id,
            sources=[JobStatus.RUNNING],
            target=JobStatus.TRANSFERRING,
            event="generated",
            values=values,
            detail=detail,
        )
        is not None
    )


def claim_for_transfer(session: Session, *, job_id: uuid.UUID, lease_s: float) -> Claim | None:
    """Take the transfer lease of a transferring job whose lease is free or expired; the claim
    carries the job as the update left it (its attempt counted) and the outputs already
    stored (counted by the same statement; listed only when there are any)."""
    token, values = lease_values(lease_s)
    now = utcnow()
    images = select(func.count()).where(JobImage.job_id == Job.id).scalar_subquery()
    statement = (
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.TRANSFERRING.value,
            or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
            or_(Job.next_action_at.is_(None), Job.next_action_at <= now),
        )
        .values(**values, transfer_attempts=Job.transfer_attempts + 1, updated_at=now)
        .returning(Job, images.label("stored"))
    )
    row = update_job_with_event(session, statement, event="transfer_started", also="stored")
    if row is None:
        return None
    job, stored = row
    done = frozenset(stored_indexes(session, job_id)) if stored else frozenset()
    return Claim(job_id, token, attempt=job.transfer_attempts, job=job, stored=done)


def release_transfer(
    session: Session, *, claim: Claim, not_before: datetime, reason: str, refund: bool = False
) -> bool:
    """Give the transfer lease back, to be tried again at ``not_before`` (``refund``: the
    attempt is not counted, as when storage, not the output, failed)."""
    attempts = Job.transfer_attempts - 1 if refund else Job.transfer_attempts
    statement = (
        update(Job)
        .where(Job.id == claim.job_id, holds(claim), Job.status == JobStatus.TRANSFERRING.value)
        .values(
            **lease_released(),
            next_action_at=not_before,
            error_message=reason,
            transfer_attempts=attempts,
            updated_at=utcnow(),
        )
    )
    if session.execute(statement).rowcount != 1:  # type: ignore[attr-defined]
        return False
    add_event(
        session,
        job_id=claim.job_id,
        event="transfer_retry",
        detail={"reason": reason, "retry_at": not_before.isoformat()}
        | ({"attempt_refunded": True} if refund else {}),
    )
    return True


def renew_transfer_lease(session: Session, *, claim: Claim, lease_s: float) -> bool:
    """Extend the transfer lease before the next output; False if the job moved on or the
    lease was lost (cancelled, or taken over after it expired)."""
    statement = (
        update(Job)
        .where(Job.id == claim.job_id, holds(claim), Job.status == JobStatus.TRANSFERRING.value)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
    )
    return session.execute(statement).rowcount == 1  # type: ignore[attr-defined]


def mark_succeeded(session: Session, *, claim: Claim) -> bool:
    """transferring -> succeeded, only for the holder of the transfer lease."""
    values = {
        **lease_released(),
        "finished_at": utcnow(),
        "next_action_at": None,
        "error_code": None,
        "error_message": None,
    }
    return (
        move(
            session,
            job_id=claim.job_id,
            sources=[JobStatus.TRANSFERRING],
            target=JobStatus.SUCCEEDED,
            event="succeeded",
            claim=claim,
            values=values,
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
