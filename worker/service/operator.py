"""What an operator does with the queue: a summary, job listings, retries of failed jobs, and
pausing and resuming submissions fleet-wide.

Plain data in and out (the CLI, the API and the dashboard render it). Retried jobs go back to
``queued`` through a guarded update (``store.transitions.retry_failed``) and the dispatcher is
woken after the commit; if the broker is down they stay queued for its next cycle.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from models.base import utcnow
from worker.core import ports
from worker.core.errors import BadInput, ImagegenError, JobNotFound
from worker.core.settings import get_settings
from worker.core.states import STATUSES, JobStatus
from worker.core.timespec import iso
from worker.core.untrusted import text_problem
from worker.db.aftercommit import call_after_commit
from worker.db.engine import session_scope
from worker.service import views
from worker.store import jobs as job_store
from worker.store import queue as queries
from worker.store import transitions
from worker.store.fleet import FleetState, clear_pause, read_fleet_state, set_paused
from worker.telemetry.metrics import QueueFacts

log = logging.getLogger("imagegen.admin")

#: Jobs moved back to queued per transaction by ``retry_failed``.
RETRY_CHUNK = 500
#: The longest reason a pause may give.
MAX_REASON_CHARS = 500


class NotRetryable(ImagegenError):
    """Only failed jobs can be retried."""

    code = "not_retryable"


# --- looking ------------------------------------------------------------------------------------


def summary() -> dict[str, Any]:
    """Counts by state, work in flight, the queued backlog and the fleet's pause/breaker."""
    now = utcnow()
    with session_scope() as session:
        counts = queries.counts_by_status(session)
        queue = queries.queue_snapshot(session, now=now)
        failed = queries.failed_by_code(session)
    fleet = read_fleet_state()
    oldest = queue.oldest_queued_at
    return {
        "counts": {status: counts.get(status, 0) for status in STATUSES},
        "total": sum(counts.values()),
        "in_flight": counts.get("submitting", 0) + counts.get("running", 0),
        "queued_by_priority": queue.queued_by_priority,
        "queued_due": queue.queued_due,
        "oldest_queued_at": iso(oldest),
        "oldest_queued_age_s": round((now - oldest).total_seconds(), 1) if oldest else None,
        "failed_by_code": failed,
        "paused": fleet.paused,
        "breaker": fleet.breaker,
        "fleet_note": fleet.reason,
        "fleet": fleet.as_dict(),
    }


def fleet_state() -> FleetState:
    """The fleet's pause, breaker, rate and last dispatch cycle, without counting jobs (the
    beat's health check)."""
    return read_fleet_state()


def queue_facts() -> QueueFacts:
    """The queue gauges for ``/metrics``: active jobs only, under a statement timeout."""
    now = utcnow()
    with session_scope() as session:
        queries.limit_statement_time(session, get_settings().ready_timeout_s)
        queue = queries.queue_snapshot(session, now=now)
        fleet = read_fleet_state(session)
    oldest = queue.oldest_queued_at
    age = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
    cooldown = (fleet.cooldown_until - now).total_seconds() if fleet.cooldown_until else 0.0
    return QueueFacts(
        active=queue.active,
        queued_by_priority=queue.queued_by_priority,
        queued_due=queue.queued_due,
        oldest_queued_age_s=age,
        paused=fleet.paused,
        breaker=fleet.breaker,
        cooldown_s=max(cooldown, 0.0),
        submit_rate=fleet.submit_rate,
        max_in_flight=fleet.max_in_flight,
    )


def list_jobs(
    *,
    statuses: Sequence[str] = (),
    batch_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Jobs newest first, as ``views.job_view`` dictionaries (no events, no images)."""
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        raise BadInput([("status", f"unknown {', '.join(unknown)}; one of {', '.join(STATUSES)}")])
    with session_scope() as session:
        found = queries.list_jobs(
            session, statuses=statuses, batch_id=batch_id, since=since, limit=limit
        )
        return [views.job_view(job) for job in found]


def _str(value: object) -> str | None:
    return None if value is None else str(value)


# --- retrying -----------------------------------------------------------------------------------


def retry_job(job_id: uuid.UUID) -> None:
    """Send one failed job back to the queue; refuses any other state."""
    with session_scope() as session:
        job = job_store.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        if job.status != JobStatus.FAILED:
            raise NotRetryable(f"job {job_id} is {job.status}: only failed jobs can be retried")
        moved = transitions.retry_failed(session, job_ids=[job_id], deadline_at=_deadline())
    if not moved:  # it left the failed state between the read and the update
        raise NotRetryable(f"job {job_id} is no longer failed")
    _dispatch(moved)


def retry_failed(*, batch_id: uuid.UUID | None = None, code: str | None = None) -> list[uuid.UUID]:
    """Send every failed job (of one batch, with one error code) back to the queue."""
    with session_scope() as session:
        candidates = queries.failed_job_ids(session, batch_id=batch_id, code=code)
    retried: list[uuid.UUID] = []
    for start in range(0, len(candidates), RETRY_CHUNK):
        with session_scope() as session:  # short transactions: a few hundred rows each
            moved = transitions.retry_failed(
                session, job_ids=candidates[start : start + RETRY_CHUNK], deadline_at=_deadline()
            )
        _dispatch(moved)
        retried += moved
    log.info(
        "jobs_retried",
        extra={"count": len(retried), "error_code": code, "batch_id": _str(batch_id)},
    )
    return retried


def _deadline() -> datetime:
    return utcnow() + timedelta(seconds=get_settings().job_deadline_s)


def _dispatch(job_ids: list[uuid.UUID]) -> None:
    """Retried jobs are queued again: the dispatcher sends them as the fleet's limits allow."""
    if job_ids:
        _wake()


# --- pausing ------------------------------------------------------------------------------------


def pause(reason: str, *, by: str, code: str = "manual") -> FleetState:
    """Stop every submission fleet-wide, by hand; idempotent. The reason is shown to every
    operator, so it is refused (:class:`BadInput`) when it cannot be stored as it is."""
    if (problem := text_problem(reason, MAX_REASON_CHARS)) is not None:
        raise BadInput([("reason", problem)])
    with session_scope() as session:
        set_paused(session, reason=reason, by=by, code=code)
        return read_fleet_state(session)


def resume(*, by: str) -> FleetState:
    """Let submissions go again (and end a cool-down); idempotent."""
    with session_scope() as session:
        clear_pause(session, by=by)
        call_after_commit(session, _wake)
        return read_fleet_state(session)


def _wake() -> None:
    ports.current().wake_dispatcher(force=True)
