"""The dispatcher: moves queued jobs from the table into Celery as fast as the limits allow.

Jobs wait in the table, not in the broker: a 100,000-job batch is 100,000 rows and at most
about ``IMAGEGEN_MAX_IN_FLIGHT`` submit messages. Each cycle (every
``IMAGEGEN_DISPATCH_INTERVAL_S`` from ``imagegen beat``, and on demand when a batch arrives,
capacity frees up or submissions resume) reads the fleet's state, works out how many
submissions can go before the next cycle, and sends that many: interactive jobs first, then
batch jobs shared fairly between open batches (one big batch does not starve a small one);
both shared between tenants by weight, leaving out tenants at their in-flight cap and tenants
or batches whose budget cannot take another job (``Share``).
Each message carries a countdown to the moment its token will be in the bucket, so workers
don't claim ahead of the rate. The claim itself re-checks every limit under the fleet lock, so
the dispatcher's arithmetic only has to be good, never exact.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models.base import utcnow
from worker.core import tenancy
from worker.core.limits import Budget, Limits, dispatch_budget, token_eta
from worker.core.settings import Settings
from worker.core.tenancy import DEFAULT_TENANT
from worker.db.engine import SessionFactory
from worker.store import dispatch, fleet, locks, spend, tenants
from worker.store import jobs as job_store
from worker.telemetry import metrics, tracing

log = logging.getLogger("imagegen.dispatch")

#: ``send(job_id, countdown_s)`` publishes one submit message.
Send = Callable[[uuid.UUID, float], None]
#: Open batches looked at per cycle (picked at random when there are more).
MAX_GROUPS = 200
#: A tenant's loose jobs (batch None) or one of its batches.
Group = tuple[str, uuid.UUID | None]
#: ``fetch(group, limit, offset)``: the group's next dispatchable jobs.
Fetch = Callable[[Group, int, int], list[uuid.UUID]]


@dataclass
class Share:
    """The cycle's groups and how capacity is split between them: by tenant weight (a
    tenant's weight split evenly between its groups), at least one job a round for every
    group with work, never past a tenant's in-flight room. What a group leaves goes to the
    others, so one tenant's 100,000-job batch takes what the others do not use, never more."""

    loose: list[Group]
    batches: list[Group]
    weights: dict[str, float]
    #: Tenants with an in-flight cap or a submit rate: how many they may send this cycle.
    room_of: dict[str, int]
    rng: random.Random

    def split(self, room: int, groups: list[Group], fetch: Fetch) -> dict[Group, list[uuid.UUID]]:
        groups = list(groups)
        self.rng.shuffle(groups)  # who gets the odd ones out changes every cycle
        taken: dict[Group, list[uuid.UUID]] = {group: [] for group in groups}
        left = dict(self.room_of)
        hungry = groups
        while room > 0 and hungry:
            # what the hungry groups hold plus the room, split by weight: a group that took
            # less than its part because it ran out leaves the rest to the others, by weight
            weight = tenancy.group_weights({g: g[0] for g in hungry}, self.weights)
            targets = tenancy.shares(room + sum(len(taken[g]) for g in hungry), weight)
            still_hungry, progressed = [], False
            for group in hungry:
                want = min(targets[group] - len(taken[group]), room, left.get(group[0], room))
                if want <= 0:
                    still_hungry.append(group)  # at its part this round
                    continue
                got = fetch(group, want, len(taken[group]))
                taken[group] += got
                room -= len(got)
                progressed |= bool(got)
                if group[0] in left:
                    left[group[0]] -= len(got)
                if len(got) == want:
                    still_hungry.append(group)
            if not progressed and len(still_hungry) == len(hungry):
                break
            hungry = still_hungry
        return taken


@dataclass
class Cycle:
    """What one dispatch cycle did (for logs and tests)."""

    sent: int = 0
    interactive: int = 0
    by_batch: dict[str, int] = field(default_factory=dict)
    budget: Budget | None = None
    skipped: bool = False


def _label(group: Group) -> str:
    """A group in logs: its batch, or the tenant's loose batch-priority jobs."""
    return str(group[1]) if group[1] else f"loose:{group[0]}"


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
        share = self._tenants_share(session, now)

        def loose(priority: str) -> Fetch:
            def fetch(group: Group, limit: int, offset: int) -> list[uuid.UUID]:
                return dispatch.dispatchable_jobs(
                    session, priority=priority, batch_id=group[1], tenant=group[0], now=now,
                    lost_before=lost_before, limit=limit, offset=offset,
                )  # fmt: skip

            return fetch

        taken = share.split(budget.interactive, share.loose, loose("interactive"))
        interactive = [job_id for ids in taken.values() for job_id in ids]
        cycle.interactive = len(interactive)
        room = min(budget.batch, budget.interactive) - len(interactive)
        batch: list[uuid.UUID] = []
        if room > 0:
            taken = share.split(room, share.loose + share.batches, loose("batch"))
            cycle.by_batch = {_label(group): len(ids) for group, ids in taken.items() if ids}
            batch = [job_id for ids in taken.values() for job_id in ids]
        return interactive, batch

    def _tenants_share(self, session: Session, now: datetime) -> Share:
        """Who may have work sent this cycle, and with what weight: tenants or batches out of
        budget are left out (their jobs wait in the table); tenants at their in-flight cap or
        rate get no room (``Share.room_of``)."""
        weights = {DEFAULT_TENANT: 1.0} | tenants.weights(session)  # the default may be unset
        batches = tenants.batch_tenants(session, dispatch.open_batches(session, limit=10_000))
        cheapest = min(self.settings.price_table.values())
        broke, broke_batches = spend.out_of_budget(
            session, price=cheapest, now=now, batch_ids=list(batches)
        )
        waiting = broke
        loose: list[Group] = [(name, None) for name in weights if name not in waiting]
        groups: list[Group] = [
            (tenant, batch_id)
            for batch_id, tenant in batches.items()
            if tenant not in waiting and batch_id not in broke_batches
        ]
        if len(groups) > MAX_GROUPS:
            groups = self.rng.sample(groups, MAX_GROUPS)
        rooms = tenants.rooms(session, now=now, horizon_s=self.settings.dispatch_interval_s)
        return Share(loose, groups, weights, rooms, self.rng)

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
