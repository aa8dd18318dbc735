"""What a job's terminal transition leaves behind: its webhook event and its batch's completion.

``store.transitions.move`` calls :func:`job_finished` inside the transaction that ends a job,
so the webhook delivery row exists if and only if the job's new state committed. After that
commit (never before: a rollback sends nothing), the deliveries are handed to the workers
(``ports.send_webhooks``) and the job's batch is checked for completion in a short transaction
of its own, by a guarded update that only one finisher can win
(``store.batches.complete_if_done``). Checking after the commit is what makes concurrent
finishers safe without locking the batch row: whichever check runs last sees every job
terminal. A crash between the commit and the check is repaired by :func:`sweep`, which also
re-sends deliveries whose message was lost.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from worker.core import ports
from worker.db.aftercommit import call_after_commit
from worker.store import batches, deliveries

log = logging.getLogger("imagegen.outbox")
_KEY = "imagegen_outbox"
_SWEEP_LIMIT = 500


@dataclass
class _Pending:
    engine: Engine
    deliveries: list[uuid.UUID] = field(default_factory=list)
    batches: set[uuid.UUID] = field(default_factory=set)


def job_finished(
    session: Session,
    *,
    job_id: uuid.UUID,
    status: str,
    reports_to: tuple[uuid.UUID | None, str | None] | None = None,
) -> None:
    """Record the job's webhook (if it has a callback URL) and queue its batch's check.
    ``reports_to``: the job's (batch id, callback URL) when the caller's statement just
    returned them (else they are read)."""
    batch_id, url = reports_to or deliveries.job_reporting(session, job_id)
    if url is None and batch_id is None:
        return
    pending = _pending(session)
    if url is not None:
        # one event per ending: a job retried by an operator reports its next ending too
        retries = deliveries.retries_of(session, job_id)
        key = f"job:{job_id}" + (f":retry{retries}" if retries else "")
        delivery = deliveries.record_delivery(
            session,
            dedup_key=key,
            event=f"job.{status}",
            url=url,
            now=datetime.now(UTC),
            job_id=job_id,
        )
        if delivery is not None:
            pending.deliveries.append(delivery)
    if batch_id is not None:
        pending.batches.add(batch_id)


def check_batch_after_commit(session: Session, *, batch_id: uuid.UUID) -> None:
    """Queue the batch's completion check for after this transaction commits (jobs of it
    ended in bulk, e.g. a batch cancel, without a webhook of their own)."""
    _pending(session).batches.add(batch_id)


def _pending(session: Session) -> _Pending:
    """This transaction's pending work, relayed once its outermost transaction commits."""
    root = session.get_transaction()
    current = session.info.get(_KEY)
    if current is not None and current[0] is root:
        pending: _Pending = current[1]
        return pending
    bind: Any = session.get_bind()
    pending = _Pending(engine=getattr(bind, "engine", bind))
    session.info[_KEY] = (root, pending)  # a rolled-back transaction's entry is replaced
    call_after_commit(session, _relay, pending)
    return pending


def _relay(pending: _Pending) -> None:
    send(pending.deliveries)  # the job's change is committed: nothing here fails the caller
    for batch_id in pending.batches:
        try:
            complete_batch(pending.engine, batch_id)
        except Exception:
            log.exception("batch_completion_check_failed", extra={"batch_id": str(batch_id)})


def complete_batch(engine: Engine, batch_id: uuid.UUID) -> bool:
    """Mark the batch completed if all its jobs are terminal, recording its webhook once."""
    delivery = None
    with Session(engine) as session, session.begin():
        batch = batches.complete_if_done(session, batch_id=batch_id, now=datetime.now(UTC))
        if batch is None:
            return False
        if batch.callback_url:
            # completed again after an operator retry: a new event for the new completion
            stamp = int(batch.completed_at.timestamp() * 1e6) if batch.completed_at else 0
            key = f"batch:{batch_id}:{stamp}"  # fits the 64-character key
            delivery = deliveries.record_delivery(
                session,
                dedup_key=key,
                event="batch.completed",
                url=batch.callback_url,
                now=datetime.now(UTC),
                batch_id=batch_id,
            )
    log.info("batch_completed", extra={"batch_id": str(batch_id)})
    send([delivery] if delivery else [])
    return True


def send(delivery_ids: list[uuid.UUID]) -> None:
    """Hand deliveries to the workers; if the broker is down, the sweep finds them again."""
    if not delivery_ids:
        return
    try:
        ports.current().send_webhooks(delivery_ids)
    except Exception as exc:  # one line: an outage is not a bug
        error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning(
            "webhook_dispatch_failed", extra={"deliveries": len(delivery_ids), "error": error}
        )


@dataclass(frozen=True)
class SweepResult:
    batches_completed: int
    deliveries_resent: int


def sweep(engine: Engine, *, stale_s: float) -> SweepResult:
    """Complete batches a crash left open and re-send deliveries overdue by ``stale_s``."""
    with Session(engine) as session, session.begin():
        open_batches = batches.finished_incomplete(session, limit=_SWEEP_LIMIT)
    completed = sum(complete_batch(engine, batch_id) for batch_id in open_batches)
    with Session(engine) as session, session.begin():
        due = deliveries.due(session, now=datetime.now(UTC), stale_s=stale_s, limit=_SWEEP_LIMIT)
    send(due)
    if completed or due:
        log.info("outbox_swept", extra={"batches_completed": completed, "resent": len(due)})
    return SweepResult(completed, len(due))


def budget_warning(session: Session, *, job_id: uuid.UUID, scope: str, period: str) -> None:
    """A budget the job's submission reserved on passed 80 %: one ``budget.warning`` event per
    budget and period, to the callback of the job's batch, else to the job's own (none: the
    metric, the log line and the job event are all there is)."""
    batch_id, url = deliveries.job_reporting(session, job_id)
    batch = batches.get_batch(session, batch_id) if batch_id is not None else None
    to_batch = batch is not None and bool(batch.callback_url)
    target = batch.callback_url if batch is not None and to_batch else url
    if target is None:
        return
    digest = hashlib.sha256(f"{scope}|{period}".encode()).hexdigest()[:40]
    delivery = deliveries.record_delivery(
        session,
        dedup_key=f"budget:{digest}",
        event="budget.warning",
        url=target,
        now=datetime.now(UTC),
        job_id=None if to_batch else job_id,
        batch_id=batch_id if to_batch else None,
    )
    if delivery is not None:
        _pending(session).deliveries.append(delivery)
