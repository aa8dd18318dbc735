"""The dispatcher: moves queued jobs from the table into Celery as fast as the limits allow.

Jobs wait in the table, not in the broker: a 100,000-job batch is 100,000 rows and at most
about ``IMAGEGEN_MAX_IN_FLIGHT`` submit messages. Each cycle (every
``IMAGEGEN_DISPATCH_INTERVAL_S`` from ``imagegen beat``, and on demand when a batch arrives,
capacity frees up or submissions resume) reads the fleet's state, works out how many
submissions can go before the next cycle, and sends that many: interactive jobs first, then
batch jobs shared fairly between open batches (one big batch does not starve a small one).
Each message carries a countdown to the moment its token will be in the bucket, so workers
don't claim ahead of the rate. The claim itself re-checks every limit under the fleet lock, so
the dispatcher's arithmetic only has to be good, never exact.
"""

from __future__ import annotations

import logging
import math
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models.base import utcnow
from worker.core.limits import Budget, Limits, dispatch_budget, token_eta
from worker.core.settings import Settings
from worker.db.engine import SessionFactory
from worker.store import dispatch, fleet, locks
from worker.store import jobs as job_store
from worker.telemetry import metrics, tracing

log = logging.getLogger("imagegen.dispatch")

#: ``send(job_id, countdown_s)`` publishes one submit message.
Send = Callable[[uuid.UUID, float], None]
#: Open batches looked at per cycle (picked at random when there are more).
MAX_GROUPS = 200


@dataclass
class Cycle:
    """What one dispatch cycle did (for logs and tests)."""

    sent: int = 0
    interactive: int = 0
    by_batch: dict[str, int] = field(default_factory=dict)
    budget: Budget | None = None
    skipped: bool = False


class Dispatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: SessionFactory,
        send: Send,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.sessions = sessions
        self.send = send
        self.clock = clock or utcnow
        self.rng = rng or random.Random()

    def run_once(self) -> Cycle:
        cycle = Cycle()
        with self.sessions() as session:
            if not locks.try_singleton_lock(session, "imagegen-dispatcher"):
                cycle.skipped = True  # another cycle is running right now
                return cycle
            now = self.clock()
            fleet.dispatcher_ran(session)
            outstanding = dispatch.count_outstanding(
                session, since=now - timedelta(seconds=self.settings.dispatch_lost_after_s)
            )
            bucket = fleet.read_bucket(session)
            cycle.budget = dispatch_budget(
                self.limits,
                bucket,
                now,
                in_flight=fleet.count_in_flight(session, self.limits.max_in_flight),
                outstanding=outstanding,
                horizon_s=self.settings.dispatch_interval_s,
                max_messages=self.settings.dispatch_max_per_cycle,
            )
            if cycle.budget.total == 0:
                return cycle
            interactive, batch = self._choose(session, cycle.budget, now, cycle)
            chosen = interactive + batch
            dispatch.mark_dispatched(session, job_ids=chosen, at=now)
            # each send joins its job's trace (read only when this process traces)
            traces = job_store.traceparents(session, chosen) if tracing.enabled() else {}
        self._send(
            chosen,
            [
                token_eta(
                    self.limits,
                    bucket,
                    now,
                    outstanding + position,
                    "interactive" if position < len(interactive) else "batch",
                )
                for position in range(len(chosen))
            ],
            traces,
        )
        cycle.sent = len(chosen)
        metrics.dispatched(len(interactive), len(batch))
        if chosen:
            log.debug(
                "dispatched", extra={"interactive": cycle.interactive, "batches": cycle.by_batch}
            )
        return cycle

    def _choose(
        self, session: Session, budget: Budget, now: datetime, cycle: Cycle
    ) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        lost_before = now - timedelta(seconds=self.settings.dispatch_lost_after_s)
        interactive = dispatch.dispatchable_jobs(
            session,
            priority="interactive",
            batch_id=None,
            now=now,
            lost_before=lost_before,
            limit=budget.interactive,
        )
        cycle.interactive = len(interactive)
        room = min(budget.batch, budget.interactive) - len(interactive)
        batch: list[uuid.UUID] = []
        if room > 0:
            batch = self._fair_share(session, room, now, lost_before, cycle)
        return interactive, batch

    def _fair_share(
        self, session: Session, room: int, now: datetime, lost_before: datetime, cycle: Cycle
    ) -> list[uuid.UUID]:
        """Up to ``room`` batch jobs, the same number from every open batch (and from loose
        batch-priority jobs) where they have that many; what one leaves goes to the others."""
        groups: list[uuid.UUID | None] = [None, *dispatch.open_batches(session, limit=10_000)]
        if len(groups) > MAX_GROUPS:
            groups = self.rng.sample(groups, MAX_GROUPS)
        self.rng.shuffle(groups)  # who gets the odd ones out changes every cycle
        taken: dict[uuid.UUID | None, list[uuid.UUID]] = {group: [] for group in groups}
        hungry = list(groups)
        while room > 0 and hungry:
            share = max(1, math.ceil(room / len(hungry)))
            still_hungry = []
            for group in hungry:
                if room <= 0:
                    break
                want = min(share, room)
                got = dispatch.dispatchable_jobs(
                    session,
                    priority="batch",
                    batch_id=group,
                    now=now,
                    lost_before=lost_before,
                    limit=want,
                    offset=len(taken[group]),
                )
                taken[group] += got
                room -= len(got)
                if len(got) == want:
                    still_hungry.append(group)
            hungry = still_hungry
        cycle.by_batch = {str(group or "loose"): len(ids) for group, ids in taken.items() if ids}
        return [job_id for ids in taken.values() for job_id in ids]

    def _send(
        self,
        job_ids: list[uuid.UUID],
        countdowns: list[float],
        traces: dict[uuid.UUID, str | None],
    ) -> None:
        for index, (job_id, countdown) in enumerate(zip(job_ids, countdowns, strict=True)):
            try:
                with tracing.job_span(
                    "imagegen.dispatch", job_id=job_id, traceparent=traces.get(job_id)
                ):
                    self.send(job_id, countdown)
            except Exception:  # the broker is down: hand the rest back to the next cycle
                log.exception("dispatch_send_failed", extra={"unsent": len(job_ids) - index})
                with self.sessions() as session:
                    dispatch.mark_dispatched(session, job_ids=job_ids[index:], at=None)
                return
