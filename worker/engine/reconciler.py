"""The reconciler: finds jobs whose next step is overdue and drives them again.

Postgres is the record and a Celery message is only a nudge, so a lost message (Redis flushed,
a worker killed, a publish that failed) delays a job and never loses it: a beat task runs
:meth:`Reconciler.run_once` every few seconds, one pass at a time across the fleet.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from worker.core.ports import Step
from worker.core.settings import Settings
from worker.core.states import JobStatus
from worker.db.engine import SessionFactory
from worker.store import fleet, locks, recovery
from worker.store import jobs as job_store

log = logging.getLogger("imagegen.reconciler")

Send = Callable[[Step, uuid.UUID], None]
#: Which step drives a job on in each active status. Queued jobs are the dispatcher's: it sends
#: them again when their message was lost (``IMAGEGEN_DISPATCH_LOST_AFTER_S``).
STEP_FOR: dict[JobStatus, Step] = {JobStatus.RUNNING: "poll", JobStatus.TRANSFERRING: "transfer"}
#: How far back the discards of unsuccessful jobs' outputs are checked (a discard lost in a
#: broker outage is sent again; older jobs are retention's).
DISCARD_WITHIN = timedelta(days=1)


@dataclass
class Pass:
    """What one reconciler pass did (for logs and tests)."""

    redriven: dict[str, int] = field(default_factory=dict)
    leases_expired: int = 0
    deadlines: int = 0
    #: Discards of unsuccessful jobs' outputs sent again (lost or failed).
    discards: int = 0
    skipped: bool = False
    #: A storage pause was lifted by this pass's probe.
    storage_recovered: bool = False


class Reconciler:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        send: Send,
        clock: Callable[[], datetime] | None = None,
        probe_storage: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.send = send
        self.clock = clock or (lambda: datetime.now(UTC))
        self.probe_storage = probe_storage

    def run_once(self) -> Pass:
        now = self.clock()
        result = Pass()
        with self.sessions() as session:
            if not locks.try_singleton_lock(session, "imagegen-reconciler"):
                result.skipped = True
                return result
            result.deadlines = self._deadlines(session, now)
            result.leases_expired = len(self._expired_submits(session, now))
            to_send = {status: self._stale(session, status, now) for status in STEP_FOR}
            to_discard = recovery.undiscarded_jobs(
                session,
                ended_before=self._before(now),
                ended_after=now - DISCARD_WITHIN,
                limit=self.settings.reconcile_batch,
            )
        for status, job_ids in to_send.items():  # send only after the pass committed
            for job_id in job_ids:
                self.send(STEP_FOR[status], job_id)
            result.redriven[status.value] = len(job_ids)
        for job_id in to_discard:
            self.send("discard", job_id)
        result.discards = len(to_discard)
        result.storage_recovered = self._probe_storage()
        if (
            result.deadlines
            or result.leases_expired
            or result.discards
            or any(result.redriven.values())
        ):
            log.info(
                "reconciled",
                extra={
                    "redriven": result.redriven,
                    "leases_expired": result.leases_expired,
                    "deadlines": result.deadlines,
                    "discards": result.discards,
                },
            )
        return result

    def _probe_storage(self) -> bool:
        """While a storage outage pauses submissions, try a write; lift the pause if it works."""
        if self.probe_storage is None:
            return False
        with self.sessions() as session:
            if not fleet.storage_paused(session):
                return False
        try:
            self.probe_storage()
        except Exception as exc:
            log.warning("storage_still_unavailable", extra={"error": str(exc)[:300]})
            return False
        with self.sessions() as session:
            return fleet.storage_recovered(session)

    def _before(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.settings.stale_after_s)

    def _stale(self, session: Session, status: JobStatus, now: datetime) -> list[uuid.UUID]:
        job_ids = recovery.stale_jobs(
            session,
            status=status,
            before=self._before(now),
            now=now,
            limit=self.settings.reconcile_batch,
        )
        job_store.touch(
            session, job_ids=job_ids, event="redriven", detail={"step": STEP_FOR[status]}
        )
        return job_ids

    def _expired_submits(self, session: Session, now: datetime) -> list[uuid.UUID]:
        job_ids = recovery.stale_jobs(
            session,
            status=JobStatus.SUBMITTING,
            before=now,
            now=now,
            limit=self.settings.reconcile_batch,
        )
        retry = self.settings.ambiguous_submit == "retry"
        reason = "the worker submitting this job was lost; the request may have been sent"
        return [
            job_id
            for job_id in job_ids
            if recovery.expire_submit_lease(
                session, job_id=job_id, now=now, retry=retry, reason=reason
            )
            and retry
        ]

    def _deadlines(self, session: Session, now: datetime) -> int:
        job_ids = recovery.overdue_jobs(session, now=now, limit=self.settings.reconcile_batch)
        return sum(recovery.expire_deadline(session, job_id=job_id, now=now) for job_id in job_ids)
