"""Fleet-wide limits against real Postgres: concurrent claims, the dispatcher's choices,
pause and resume from the command line and in the metrics."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from models import Job
from models.base import utcnow
from tests.integration.test_admin import run_json, run_process, sql
from worker.core.limits import Admission, Limits, Refused
from worker.core.settings import Settings, get_settings
from worker.core.states import JobStatus
from worker.db.engine import get_engine, session_scope
from worker.engine.dispatcher import Dispatcher
from worker.service import batches, jobs
from worker.service import operator as admin
from worker.store import fleet, locks, steps, transitions

pytestmark = pytest.mark.integration

REQUEST = {"prompt": "a lighthouse at dusk", "aspect_ratio": "16:9", "resolution": "1080p"}


def queued_jobs(count: int, *, priority: str = "interactive") -> list[uuid.UUID]:
    return [jobs.enqueue(REQUEST, priority=priority, dispatch=False) for _ in range(count)]


def a_batch(count: int) -> list[uuid.UUID]:
    return batches.enqueue_batch([REQUEST] * count, dispatch=False).job_ids


def statuses() -> Counter[str]:
    return Counter(dict(sql("SELECT status, count(*) FROM jobs GROUP BY status")))


# --- the claim ----------------------------------------------------------------------------------


def test_concurrent_claims_never_exceed_the_in_flight_cap(configured) -> None:
    # Given 60 queued jobs and 16 threads racing to claim them, with room for 7 in flight
    job_ids = queued_jobs(60)
    limits = Limits(submit_rate=0, max_in_flight=7, interactive_reserve=0)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def claim_many(seed: int) -> None:
        rng = random.Random(seed)
        for job_id in rng.sample(job_ids, 20):
            with session_scope() as session:
                result = steps.claim_for_submit(session, job_id=job_id, lease_s=60, limits=limits)
            key = (
                "claimed"
                if isinstance(result, transitions.Claim)
                else result.refused.value
                if isinstance(result, Admission) and result.refused
                else "gone"
            )
            with lock:
                outcomes[key] += 1

    # When they all claim at once
    threads = [threading.Thread(target=claim_many, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly 7 were claimed, every other attempt was refused for the cap or found the
    # job taken, and the refused jobs are back in the dispatcher's queue
    assert outcomes["claimed"] == 7 and statuses()["submitting"] == 7
    assert outcomes[Refused.IN_FLIGHT.value] > 0
    assert sql(
        "SELECT count(*) FROM jobs WHERE status = 'queued' AND dispatched_at IS NOT NULL"
    ) == [(0,)]


def test_concurrent_claims_take_each_token_once(configured) -> None:
    # Given 50 jobs and a bucket of 5 tokens refilling at 0.01/s
    job_ids = queued_jobs(50)
    limits = Limits(submit_rate=0.01, submit_burst=5, max_in_flight=1000)
    claimed: list[uuid.UUID] = []

    def claim(job_id: uuid.UUID) -> None:
        with session_scope() as session:
            result = steps.claim_for_submit(session, job_id=job_id, lease_s=60, limits=limits)
        if isinstance(result, transitions.Claim):
            claimed.append(job_id)

    threads = [threading.Thread(target=claim, args=(job_id,)) for job_id in job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == 5  # the burst, once, across every thread
    tokens = sql("SELECT tokens FROM fleet_controls WHERE name = 'submit'")[0][0]
    assert 0 <= tokens < 1


def test_batch_jobs_leave_the_reserved_slots_to_interactive_ones(configured) -> None:
    limits = Limits(submit_rate=0, max_in_flight=4, interactive_reserve=2)
    batch_jobs, interactive = a_batch(5), queued_jobs(3)

    def claim(job_id: uuid.UUID) -> object:
        with session_scope() as session:
            return steps.claim_for_submit(session, job_id=job_id, lease_s=60, limits=limits)

    results = [claim(job_id) for job_id in batch_jobs]
    assert sum(isinstance(r, transitions.Claim) for r in results) == 2
    assert [isinstance(claim(job_id), transitions.Claim) for job_id in interactive] == [
        True,
        True,
        False,
    ]


# --- the dispatcher -----------------------------------------------------------------------------


def dispatcher(**overrides: Any) -> tuple[Dispatcher, list[tuple[uuid.UUID, float]]]:
    sent: list[tuple[uuid.UUID, float]] = []
    settings = Settings(**{**get_settings().model_dump(), **overrides})
    return Dispatcher(
        settings=settings,
        sessions=session_scope,
        send=lambda job_id, countdown: sent.append((job_id, countdown)),
        rng=random.Random(1),
    ), sent


def test_interactive_jobs_go_first_and_batches_share_fairly(configured) -> None:
    # Given a big batch, a small batch enqueued after it, loose batch jobs and interactive ones
    big, small = a_batch(400), a_batch(10)
    loose = queued_jobs(5, priority="batch")
    interactive = queued_jobs(3)

    # When one cycle may send 43 submissions
    dispatch, sent = dispatcher(max_in_flight=43, interactive_reserve=0, submit_rate=0)
    cycle = dispatch.run_once()

    # Then the interactive jobs are all in it, and the small batch and the loose jobs are not
    # starved by the big batch that came first
    ids = [job_id for job_id, _ in sent]
    assert cycle.sent == 43 and len(set(ids)) == 43
    assert ids[:3] == interactive
    assert set(small) <= set(ids) and set(loose) <= set(ids)
    assert cycle.by_batch[str(big[0] and _batch_of(big[0]))] == 43 - 3 - 10 - 5
    # and the next cycle sends nothing more: those 43 fill every slot until claimed
    assert dispatch.run_once().sent == 0


def _batch_of(job_id: uuid.UUID) -> uuid.UUID:
    with session_scope() as session:
        batch_id = session.scalar(select(Job.batch_id).where(Job.id == job_id))
    assert batch_id is not None
    return batch_id


def test_the_dispatcher_paces_messages_at_the_submit_rate(configured) -> None:
    queued_jobs(50, priority="batch")
    with get_engine().begin() as conn:  # an empty bucket: tokens only from the rate
        conn.execute(text("UPDATE fleet_controls SET tokens = 0, tokens_at = now()"))
    dispatch, sent = dispatcher(submit_rate=4, submit_burst=8, dispatch_interval_s=1.0)
    cycle = dispatch.run_once()
    countdowns = [countdown for _, countdown in sent]
    assert cycle.sent == len(sent) <= 4  # what the next second's tokens allow (1 kept back)
    assert countdowns == sorted(countdowns) and countdowns[-1] <= 1.5


def test_a_lost_message_is_sent_again_and_nothing_goes_while_paused(configured) -> None:
    (job_id,) = queued_jobs(1)
    dispatch, sent = dispatcher(dispatch_lost_after_s=5)
    assert dispatch.run_once().sent == 1
    assert dispatch.run_once().sent == 0  # sent, not yet claimed
    sql("UPDATE jobs SET dispatched_at = :at", at=utcnow() - timedelta(seconds=6))
    assert dispatch.run_once().sent == 1  # its message was lost: again
    admin.pause("maintenance", by="test")
    sql("UPDATE jobs SET dispatched_at = NULL")
    cycle = dispatch.run_once()
    assert cycle.sent == 0 and cycle.budget is not None
    assert cycle.budget.refused is Refused.PAUSED
    admin.resume(by="test")
    assert dispatch.run_once().sent == 1
    assert [job for job, _ in sent] == [job_id] * 3


def test_a_retried_job_of_a_finished_batch_is_dispatched_again(configured) -> None:
    (job_id,) = a_batch(1)
    with session_scope() as session:
        transitions.fail(
            session,
            job_id=job_id,
            sources=[JobStatus.QUEUED],
            code="provider_failed",
            message="boom",
        )
    assert sql("SELECT completed_at IS NOT NULL FROM batches") == [(True,)]
    admin.retry_job(job_id)
    assert sql("SELECT completed_at IS NULL FROM batches") == [(True,)]
    dispatch, sent = dispatcher()
    assert dispatch.run_once().sent == 1 and sent[0][0] == job_id


# --- pause and resume ---------------------------------------------------------------------------


def test_pause_and_resume_from_the_command_line(configured, service_env) -> None:
    # When an operator pauses submissions
    done = run_process(service_env, "pause", "--reason", "provider maintenance window")
    assert done.returncode == 0, done.stderr
    assert "PAUSED" in done.stdout and "provider maintenance window" in done.stdout

    # Then status, the fleet state and the metrics say so, and no claim goes through
    view = run_json(service_env, "status")
    assert view["paused"] is True and view["fleet"]["pause_code"] == "manual"
    assert view["fleet"]["paused_by"].startswith("cli")
    assert admin.queue_facts().paused is True
    (job_id,) = queued_jobs(1)
    with session_scope() as session:
        refused = steps.claim_for_submit(session, job_id=job_id, lease_s=60)
    assert isinstance(refused, Admission) and refused.refused is Refused.PAUSED

    # And resume lets them go again
    done = run_process(service_env, "resume")
    assert done.returncode == 0, done.stderr
    assert "submissions: running" in done.stdout
    assert run_json(service_env, "status")["paused"] is False
    with session_scope() as session:
        assert isinstance(
            steps.claim_for_submit(session, job_id=job_id, lease_s=60), transitions.Claim
        )


def test_a_pause_reason_is_checked(configured, service_env) -> None:
    done = run_process(service_env, "pause", "--reason", "x" * 600)
    assert done.returncode == 2 and "reason" in done.stderr
    assert run_json(service_env, "status")["paused"] is False


def test_the_first_pause_reason_stays(configured) -> None:
    with session_scope() as session:
        assert fleet.set_paused(session, reason="provider answered 401", by="provider", code="auth")
        assert not fleet.set_paused(session, reason="later", by="provider", code="balance")
    state = fleet.read_fleet_state()
    assert (state.paused, state.pause_code, state.reason) == (True, "auth", "provider answered 401")


def test_one_dispatch_cycle_at_a_time_beside_a_reconciler_pass(configured) -> None:
    queued_jobs(2)
    dispatch, _ = dispatcher()
    with session_scope() as holder:  # a reconciler pass is running
        assert locks.try_singleton_lock(holder, "imagegen-reconciler")
        assert not dispatch.run_once().skipped
        with session_scope() as other:  # and a dispatch cycle on another host
            assert locks.try_singleton_lock(other, "imagegen-dispatcher")
            assert dispatch.run_once().skipped
