"""Budgets against real Postgres: reservations under concurrent claims (two workers never
both spend the last unit), what each end of a submit does to them, and the dispatcher's
choice between tenants (weights, budgets, in-flight caps)."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models import Job, SpendCounter
from models.base import utcnow
from tests.integration.test_admin import sql
from tests.producers import configure
from worker.core.limits import Admission, Limits, Refused
from worker.core.settings import Settings, get_settings
from worker.core.states import JobStatus
from worker.core.tenancy import Principal, Scope, day_period
from worker.db.engine import session_scope
from worker.engine.dispatcher import Dispatcher
from worker.service import batches, jobs, spend
from worker.store import spend as spend_store
from worker.store import steps, transitions
from worker.store.transitions import Claim
from worker.telemetry.metrics import BUDGET_WARNINGS

pytestmark = pytest.mark.integration

REQUEST = {"prompt": "a lighthouse at dusk", "resolution": "1080p"}  # 0.02 by default
NO_LIMITS = Limits(submit_rate=0, max_in_flight=1000, interactive_reserve=0)


def producer(tenant: str) -> Principal:
    return Principal(tenant, "k_test", frozenset({Scope.PRODUCE}))


def queued(tenant: str, count: int, **options: Any) -> list[uuid.UUID]:
    return [
        jobs.enqueue_job(REQUEST, dispatch=False, principal=producer(tenant), **options).job_id
        for _ in range(count)
    ]


def a_batch(tenant: str, count: int, **options: Any) -> list[uuid.UUID]:
    return batches.enqueue_batch(
        [REQUEST] * count, dispatch=False, principal=producer(tenant), **options
    ).job_ids


def today(tenant: str) -> SpendCounter:
    with session_scope() as session:
        row = session.get(SpendCounter, (f"tenant:{tenant}", day_period(utcnow())))
        assert row is not None
        session.expunge(row)
        return row


def claim_all(job_ids: list[uuid.UUID], threads: int = 12) -> Counter[str]:
    """Claim every job from ``threads`` threads at once; outcomes by kind."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def run(seed: int) -> None:
        start.wait()
        for job_id in random.Random(seed).sample(job_ids, len(job_ids)):
            with session_scope() as session:
                result = steps.claim_for_submit(
                    session, job_id=job_id, lease_s=60, limits=NO_LIMITS
                )
            if isinstance(result, Claim):
                key = "claimed"
            elif isinstance(result, Admission):
                key = str(result.refused)
            else:
                key = "gone"
            with lock:
                outcomes[key] += 1

    workers = [threading.Thread(target=run, args=(seed,)) for seed in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return outcomes


# --- reservations -------------------------------------------------------------------------------


def test_concurrent_claims_never_spend_past_the_budget(configured) -> None:
    # Given a tenant with room for exactly 3 jobs today, 30 of its jobs queued
    spend.set_budget(tenant="tenant-a", daily=0.06)
    job_ids = queued("tenant-a", 30)

    # When 12 workers race to claim all of them
    outcomes = claim_all(job_ids)

    # Then exactly 3 were claimed: the last unit was taken once; the rest wait, none failed
    assert outcomes["claimed"] == 3
    assert outcomes[Refused.BUDGET.value] > 0
    counter = today("tenant-a")
    assert (counter.reserved, counter.charged, counter.possible) == (60_000, 0, 0)
    with session_scope() as session:
        states = Counter(session.scalars(select(Job.status).where(Job.id.in_(job_ids))))
    assert states == {"submitting": 3, "queued": 27}


def test_the_guarded_update_alone_never_spends_the_last_unit_twice(configured) -> None:
    # Given a batch budget of 5 units, reserved on directly from 16 threads (no fleet lock)
    receipt = batches.enqueue_batch([REQUEST] * 48, dispatch=False, max_spend=0.05)
    batch_id = receipt.batch_id
    won: list[bool] = []
    start = threading.Barrier(16)

    def reserve(job_ids: list[uuid.UUID]) -> None:
        start.wait()
        for job_id in job_ids:
            with session_scope() as session:
                got = spend_store.reserve(
                    session,
                    job_id=job_id,
                    tenant="default",
                    batch_id=batch_id,
                    price=10_000,
                    now=utcnow(),
                )
            won.append(got is not None)

    threads = [threading.Thread(target=reserve, args=(receipt.job_ids[i::16],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then 5 reservations of 48 succeeded, and the counter holds exactly the budget
    assert won.count(True) == 5
    with session_scope() as session:
        counter = session.get(SpendCounter, (f"batch:{batch_id}", "all"))
        assert counter is not None and counter.reserved == 50_000


def test_each_end_of_a_submit_settles_its_reservation(configured) -> None:
    # Given a tenant with room for 3 jobs, and 3 of its jobs claimed
    spend.set_budget(tenant="tenant-a", daily=0.06)
    accepted, ambiguous, refused, more = queued("tenant-a", 4)
    claims = {}
    for job_id in (accepted, ambiguous, refused):
        with session_scope() as session:
            claim = steps.claim_for_submit(session, job_id=job_id, lease_s=60, limits=NO_LIMITS)
        assert isinstance(claim, Claim)
        claims[job_id] = claim

    # When one is accepted, one times out after sending (ambiguous), one is refused (400)
    with session_scope() as session:
        steps.mark_running(
            session,
            claim=claims[accepted],
            prediction_id="p" * 32,
            provider_status="created",
            next_poll_at=utcnow() + timedelta(seconds=5),
        )
        steps.requeue_submit(
            session,
            claim=claims[ambiguous],
            not_before=utcnow(),
            reason="read timeout",
            ambiguous=True,
        )
        transitions.fail(
            session,
            job_id=refused,
            sources=[JobStatus.SUBMITTING],
            claim=claims[refused],
            code="content_policy",
            message="refused",
        )

    # Then: one charge, one possible charge, one released reservation
    counter = today("tenant-a")
    assert (counter.charged, counter.charged_count) == (20_000, 1)
    assert (counter.possible, counter.possible_count) == (20_000, 1)
    assert counter.reserved == 0
    report = spend.report(tenant="tenant-a")
    assert report["charged"] == {"amount": 0.02, "count": 1}
    assert report["possible"] == {"amount": 0.02, "count": 1}
    assert spend.report(job_id=accepted)["charged"]["count"] == 1
    # and the released unit is free again: exactly one of the two waiting jobs goes
    assert claim_all([ambiguous, more], threads=2)["claimed"] == 1


def test_a_tenant_at_its_in_flight_cap_waits(configured) -> None:
    spend.set_budget(tenant="tenant-a", max_in_flight=2)
    job_ids = queued("tenant-a", 6)
    outcomes = claim_all(job_ids, threads=4)
    assert outcomes["claimed"] == 2 and outcomes[Refused.TENANT_IN_FLIGHT.value] > 0
    assert jobs.status(job_ids[-1])["waiting"] in ("tenant_in_flight", None)


# --- the dispatcher -----------------------------------------------------------------------------


def dispatcher(**overrides: Any) -> tuple[Dispatcher, list[uuid.UUID]]:
    sent: list[uuid.UUID] = []
    settings = Settings(**{**get_settings().model_dump(), **overrides})
    return Dispatcher(
        settings=settings,
        sessions=session_scope,
        send=lambda job_id, countdown: sent.append(job_id),
        rng=random.Random(7),
    ), sent


def tenants_of(job_ids: list[uuid.UUID]) -> Counter[str]:
    with session_scope() as session:
        return Counter(session.scalars(select(Job.tenant).where(Job.id.in_(job_ids))))


def test_the_dispatcher_shares_capacity_by_tenant_weight(configured) -> None:
    # Given tenant A (weight 3) with a 300-job batch, B (weight 1) with 300 loose batch jobs
    spend.set_budget(tenant="tenant-a", weight=3)
    spend.set_budget(tenant="tenant-b", weight=1)
    a_batch("tenant-a", 300)
    queued("tenant-b", 300, priority="batch")

    # When one cycle may send 40
    dispatch, sent = dispatcher(max_in_flight=40, interactive_reserve=0, submit_rate=0)
    cycle = dispatch.run_once()

    # Then A gets three times B's share
    assert cycle.sent == 40
    assert tenants_of(sent) == {"tenant-a": 30, "tenant-b": 10}


def test_a_huge_batch_does_not_starve_another_tenants_interactive_jobs(configured) -> None:
    a_batch("tenant-a", 500)
    interactive = queued("tenant-b", 4)
    dispatch, sent = dispatcher(max_in_flight=20, interactive_reserve=2, submit_rate=0)
    dispatch.run_once()
    assert set(interactive) <= set(sent)


def test_the_dispatcher_leaves_out_of_budget_tenants_and_batches_in_the_table(configured) -> None:
    # Given A out of budget for today, a batch of B's capped at one job, and C unlimited
    spend.set_budget(tenant="tenant-a", daily=0.01)
    a_batch("tenant-a", 20)
    capped = a_batch("tenant-b", 20, max_spend=0.02)
    free = queued("tenant-c", 5, priority="batch")

    # When a cycle runs
    dispatch, sent = dispatcher(max_in_flight=100, interactive_reserve=0, submit_rate=0)
    dispatch.run_once()

    # Then nothing of A's goes; B's batch and C's jobs do (the claim reserves B's one unit)
    shares = tenants_of(sent)
    assert "tenant-a" not in shares
    assert shares["tenant-b"] == 20 and set(free) <= set(sent)
    outcomes = claim_all(capped, threads=4)
    assert outcomes["claimed"] == 1
    # and once the first ended, the batch is left out too
    with session_scope() as session:
        batch_id = session.scalar(select(Job.batch_id).where(Job.id == capped[0]))
        assert batch_id is not None
    _, blocked = _out_of_budget([batch_id])
    assert blocked == {batch_id}


def _out_of_budget(batch_ids: list[uuid.UUID]) -> tuple[set[str], set[uuid.UUID]]:
    with session_scope() as session:
        return spend_store.out_of_budget(session, price=20_000, now=utcnow(), batch_ids=batch_ids)


def test_passing_80_percent_warns_once(configured, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch with a callback and room for 2.5 jobs
    configure(monkeypatch)
    receipt = batches.enqueue_batch(
        [REQUEST] * 4,
        dispatch=False,
        max_spend=0.05,
        callback_url="http://127.0.0.1:9/hooks",
    )
    before = BUDGET_WARNINGS.labels("default", "batch")._value.get()

    # When its jobs are claimed one after the other (the second brings it to 80 %)
    outcomes = claim_all(receipt.job_ids, threads=1)

    # Then two went, and one budget.warning webhook, metric and job event were recorded
    assert outcomes["claimed"] == 2
    rows = sql("SELECT event, batch_id FROM webhook_deliveries")
    assert rows == [("budget.warning", receipt.batch_id)]
    assert BUDGET_WARNINGS.labels("default", "batch")._value.get() == before + 1
    events = sql("SELECT count(*) FROM job_events WHERE event = 'budget_warning'")
    assert events == [(1,)]


def test_a_new_day_resets_the_daily_budget(configured) -> None:
    spend.set_budget(tenant="tenant-a", daily=0.02)
    job_id = queued("tenant-a", 1)[0]
    now = utcnow()
    with session_scope() as session:
        assert spend_store.reserve(
            session, job_id=job_id, tenant="tenant-a", batch_id=None, price=20_000, now=now
        )
        assert not spend_store.reserve(
            session, job_id=job_id, tenant="tenant-a", batch_id=None, price=1, now=now
        )
        blocked, _ = spend_store.out_of_budget(session, price=20_000, now=now, batch_ids=[])
        assert blocked == {"tenant-a"}
        tomorrow = now + timedelta(days=1)
        blocked, _ = spend_store.out_of_budget(session, price=20_000, now=tomorrow, batch_ids=[])
        assert blocked == set()
        assert spend_store.reserve(
            session, job_id=job_id, tenant="tenant-a", batch_id=None, price=20_000, now=tomorrow
        )


def test_a_tenant_over_its_submit_rate_waits(configured) -> None:
    # Given a tenant allowed 2 submissions a second (a burst of 2), 10 of its jobs queued
    spend.set_budget(tenant="tenant-a", submit_rate=2)
    job_ids = queued("tenant-a", 10)
    # When 4 workers race to claim them at once: 2 go, the rest wait for the rate
    outcomes = claim_all(job_ids, threads=4)
    assert outcomes["claimed"] == 2 and outcomes[Refused.TENANT_RATE.value] > 0
    # and the dispatcher gives the tenant no more than its rate allows per cycle
    dispatch, sent = dispatcher(
        max_in_flight=100, interactive_reserve=0, submit_rate=0, dispatch_interval_s=1.0
    )
    dispatch.run_once()
    assert 1 <= len(sent) <= 3
