"""Fleet-wide limits through real workers: two worker processes of several threads never exceed
the provider account's concurrency or rate limit; a revoked key (401) and then an exhausted
balance (403) pause submissions without failing a job, and `imagegen resume` drains the
batch; an interactive job overtakes a 1,000-job batch backlog."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests import harness
from tests.waiting import wait_for
from worker.db.engine import get_engine
from worker.service import batches, jobs
from worker.store import fleet

pytestmark = pytest.mark.e2e

REQUEST = {"aspect_ratio": "1:1", "resolution": "1080p"}


def counts() -> dict[str, int]:
    with get_engine().connect() as conn:
        return dict(conn.execute(text("SELECT status, count(*) FROM jobs GROUP BY status")).all())


def wait_counts(until: Callable[[dict[str, int]], bool], timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    seen = counts()
    while not until(seen):
        if time.monotonic() > deadline:
            pytest.fail(f"jobs did not get there in {timeout_s} s: {seen}")
        time.sleep(0.3)
        seen = counts()
    return seen


def submits_seen(url: str) -> list[float]:
    log = httpx.get(f"{url}/_sim/requests", params={"kind": "submit"}).json()["requests"]
    return sorted(entry["time"] for entry in log)


def max_over_any_window(times: list[float], rate: float, burst: int) -> float:
    """The largest (submissions in a window) - (rate x window length + burst) over every
    window that starts and ends at a submission: <= 0 when the limit held."""
    worst = float("-inf")
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            worst = max(worst, (j - i + 1) - (rate * (times[j] - start) + burst))
    return worst


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = harness.run_imagegen(env, *args)
    assert done.returncode == 0, done.stderr
    return done


def test_two_workers_never_exceed_the_accounts_limits(
    configured, service_env, simulator, start_worker, beat_process
) -> None:
    # Given a provider account limited to K=6 predictions at once and R=8 submits/s (burst 4),
    # and a fleet of two worker processes of 6 threads each configured just under it
    k, rate, burst = 6, 8.0, 4
    url = simulator(
        "--latency",
        "*=0.3-0.8",
        "--max-concurrency",
        str(k),
        "--submit-rate",
        str(rate),
        "--submit-burst",
        str(burst),
    )
    fleet_env = {
        **harness.provider_env(url),
        "IMAGEGEN_MAX_IN_FLIGHT": str(k),
        "IMAGEGEN_SUBMIT_RATE": "7",
        "IMAGEGEN_SUBMIT_BURST": "3",
        "IMAGEGEN_WORKER_CONCURRENCY": "6",
    }
    for _ in range(2):
        start_worker(**fleet_env)

    # When 200 jobs arrive: a 150-job batch and 50 interactive ones
    batches.enqueue_batch([{"prompt": f"fleet {n}", **REQUEST} for n in range(150)])
    singles = [jobs.enqueue({"prompt": f"fleet single {n}", **REQUEST}) for n in range(50)]
    started = time.monotonic()
    final = wait_counts(lambda c: c.get("succeeded", 0) + c.get("failed", 0) == 200, 300)
    elapsed = time.monotonic() - started

    # Then every job succeeded, the account never saw more than K in flight, and no window
    # of time saw more than R x its length + burst submissions
    assert final == {"succeeded": 200}
    stats = httpx.get(f"{url}/_sim/stats").json()["limits"]
    times = submits_seen(url)
    print(
        f"\n200 jobs through K={k}, R={rate}/s in {elapsed:.1f} s: max in flight seen "
        f"{stats['max_in_flight_seen']}, max submits in 1 s "
        f"{stats['max_submits_per_second_seen']}, refused {stats['refused']}, "
        f"submits {len(times)}"
    )
    assert stats["max_in_flight_seen"] <= k
    assert len(times) >= 200
    assert max_over_any_window(times, rate, burst) <= 1e-9
    assert {jobs.status(job_id)["status"] for job_id in singles} == {"succeeded"}


def test_a_revoked_key_then_an_empty_balance_pause_submissions_without_failing_jobs(
    configured, service_env, simulator, start_worker, beat_process
) -> None:
    # Given a batch of 60 jobs going through one worker
    url = simulator("--latency", "*=0.5-1.0")
    env = {
        **service_env,
        **harness.provider_env(url),
        "IMAGEGEN_SUBMIT_RATE": "10",
        "IMAGEGEN_SUBMIT_BURST": "2",
    }
    start_worker(**env)
    receipt = batches.enqueue_batch([{"prompt": f"pause {n}", **REQUEST} for n in range(60)])
    wait_counts(lambda c: c.get("succeeded", 0) >= 10, 120)

    # When the provider revokes the key (401) in the middle of it
    configure(url, revoked_keys=[harness.API_KEY])
    state = wait_paused("auth")

    # Then submissions pause fleet-wide: no job fails, the rest stay queued, nothing is sent
    assert "imagegen resume" in (state.reason or "")
    status = cli(env, "status")
    assert "PAUSED" in status.stdout
    settled = wait_quiet(url)
    assert "failed" not in counts() and counts().get("queued", 0) > 0
    assert len(submits_seen(url)) == settled

    # When the key is fixed but the balance runs out (403) and an operator resumes
    configure(url, revoked_keys=[], balance_exhausted=True)
    cli(env, "resume")
    wait_paused("balance")

    # Then submissions pause again; jobs already at the provider still finish (polls go on)
    running_done = wait_counts(lambda c: c.get("running", 0) == 0, 60)
    assert "failed" not in running_done and running_done.get("queued", 0) > 0

    # When the account is topped up and the operator resumes, the batch drains
    configure(url, balance_exhausted=False)
    cli(env, "resume")
    final = wait_counts(lambda c: c.get("succeeded", 0) + c.get("failed", 0) == 60, 180)
    assert final == {"succeeded": 60}
    views = [jobs.status(job_id) for job_id in receipt.job_ids]
    assert max(view["attempts"] for view in views) <= 2  # a refused submit is not counted
    assert fleet.read_fleet_state().paused is False


def configure(url: str, **changes: Any) -> None:
    httpx.post(f"{url}/_sim/config", json=changes).raise_for_status()


def wait_paused(code: str, timeout_s: float = 60) -> fleet.FleetState:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = fleet.read_fleet_state()
        if state.paused and state.pause_code == code:
            return state
        time.sleep(0.2)
    pytest.fail(f"submissions were not paused ({code}) in {timeout_s} s")


def wait_quiet(url: str, quiet_s: float = 2.0, timeout_s: float = 30) -> int:
    """Wait until the simulator saw no new submit for ``quiet_s``; the count then."""
    deadline = time.monotonic() + timeout_s
    seen, since = len(submits_seen(url)), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now_seen = len(submits_seen(url))
        if now_seen != seen:
            seen, since = now_seen, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return seen
    pytest.fail("submissions did not stop while paused")


def test_an_interactive_job_overtakes_a_thousand_job_backlog(
    configured, service_env, simulator, start_worker, beat_process
) -> None:
    # Given a 1,000-job batch backlog filling every batch slot of the fleet
    url = simulator("--latency", "*=1.0")
    env = {
        **harness.provider_env(url),
        "IMAGEGEN_MAX_IN_FLIGHT": "40",
        "IMAGEGEN_SUBMIT_RATE": "100",
        "IMAGEGEN_SUBMIT_BURST": "20",
        "IMAGEGEN_WORKER_CONCURRENCY": "16",
    }
    start_worker(**env)
    receipt = batches.enqueue_batch([{"prompt": f"backlog {n}", **REQUEST} for n in range(1000)])
    wait_counts(lambda c: c.get("running", 0) + c.get("submitting", 0) >= 30, 60)

    # When an interactive job is enqueued
    enqueued = datetime.now().astimezone()
    job_id = jobs.enqueue({"prompt": f"interactive {uuid.uuid4().hex[:6]}", **REQUEST})
    view = wait_for([job_id], timeout_s=60)[job_id]
    done = datetime.now().astimezone()

    # Then it went before the backlog: submitted while most of the batch was still queued
    assert view["status"] == "succeeded"
    with get_engine().connect() as conn:
        queued_then = conn.execute(
            text(
                "SELECT count(*) FROM jobs WHERE batch_id = :b AND (submitted_at IS NULL OR "
                "submitted_at > :at)"
            ),
            {"b": receipt.batch_id, "at": view["submitted_at"]},
        ).scalar()
    assert queued_then is not None and queued_then > 800
    prediction = httpx.get(f"{url}/_sim/predictions/{view['prediction_id']}").json()
    generation = prediction["completed_at"] - prediction["created_at"]
    waited = (datetime.fromisoformat(view["submitted_at"]) - enqueued).total_seconds()
    print(
        f"\ninteractive job behind a 1,000-job backlog: submitted {waited:.2f} s after "
        f"enqueue, succeeded {(done - enqueued).total_seconds():.2f} s after enqueue "
        f"(generation {generation:.2f} s, dispatch interval "
        f"{service_env['IMAGEGEN_DISPATCH_INTERVAL_S']} s)"
    )
    for other in receipt.job_ids:  # don't wait for the backlog
        jobs.cancel(other, reason="test over")
