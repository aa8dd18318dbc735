"""Tenants and budgets through real workers, the dispatcher of `imagegen beat`, Postgres, Redis,
S3 and the simulator: a tenant whose budget runs out mid-batch waits (nothing fails, spend
never passes the budget) while another tenant's jobs flow; raising the budget drains it; the
spend ledger agrees with the provider's own count of accepted submissions."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select

from models import Job
from tests import harness
from worker.core.tenancy import Principal, Scope
from worker.db.engine import session_scope
from worker.service import batches, spend

pytestmark = pytest.mark.e2e

REQUEST = {"aspect_ratio": "1:1", "resolution": "1080p"}  # 0.02 each at the default prices


def producer(tenant: str) -> Principal:
    return Principal(tenant, "k_e2e", frozenset({Scope.PRODUCE, Scope.READ}))


def states(tenant: str) -> Counter[str]:
    with session_scope() as session:
        return Counter(session.scalars(select(Job.status).where(Job.tenant == tenant)))


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen in {timeout_s} s: {states('tenant-a')} "
                        f"{states('tenant-b')}")  # fmt: skip
        time.sleep(0.3)


def submits(url: str) -> Counter[int]:
    log = httpx.get(f"{url}/_sim/requests", params={"kind": "submit"}).json()["requests"]
    return Counter(entry["status"] for entry in log)


def test_a_tenant_out_of_budget_waits_while_another_flows_and_a_raise_drains_it(
    configured, service_env, simulator, start_worker, beat_process
) -> None:
    # Given a fleet of one worker in front of a simulated provider
    url = simulator("--latency", "*=0.2-0.6")
    env = {**service_env, **harness.provider_env(url), "IMAGEGEN_MAX_IN_FLIGHT": "8"}
    start_worker(**env)
    # and tenant A with a daily budget of 10 jobs' worth, tenant B with none
    spend.set_budget(tenant="tenant-a", daily=0.2)
    spend.set_budget(tenant="tenant-b", weight=1)

    # When A submits a 30-job batch and B a 20-job one, 2 of whose submits are ambiguous the
    # first time (the provider creates the prediction, then answers 500)
    a = batches.enqueue_batch(
        [{"prompt": f"tenant a {n}", **REQUEST} for n in range(30)], principal=producer("tenant-a")
    )
    b_items = [{"prompt": f"tenant b {n}", **REQUEST} for n in range(18)] + [
        {"prompt": f"tenant b ghost {n} [sim:ghost_500] [sim:recover_after=1]", **REQUEST}
        for n in range(2)
    ]
    b = batches.enqueue_batch(b_items, principal=producer("tenant-b"))

    # Then B's jobs all go through, and A's stop at its budget: 10 succeed, 20 wait queued
    wait_until(lambda: states("tenant-b") == {"succeeded": 20}, 120, "B's batch finishing")
    wait_until(lambda: states("tenant-a")["succeeded"] == 10, 60, "A's budget being spent")
    time.sleep(3)  # several dispatch cycles: nothing more of A's is sent
    assert states("tenant-a") == {"succeeded": 10, "queued": 20}
    a_report = spend.report(tenant="tenant-a")
    assert a_report["charged"] == {"amount": 0.2, "count": 10}
    waiting = next(job_id for job_id in a.job_ids if _status(job_id) == "queued")
    shown = harness.run_imagegen(env, "status", str(waiting), "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert (view["status"], view["waiting"], view["tenant"]) == ("queued", "budget", "tenant-a")
    assert batches.batch_status(a.batch_id)["spend"]["charged"]["count"] == 10

    # When A's budget is raised
    spend.set_budget(tenant="tenant-a", daily=5)

    # Then A's batch drains, and nothing failed anywhere
    wait_until(lambda: states("tenant-a") == {"succeeded": 30}, 120, "A's batch draining")
    assert states("tenant-b") == {"succeeded": 20}

    # And the spend ledger matches what the provider accepted, ambiguous submits apart
    seen = submits(url)
    report = spend.report()
    assert report["charged"]["count"] == seen[200] == 50
    assert report["possible"]["count"] == seen[500] == 2
    assert report["tenants"]["tenant-a"]["charged"] == {"amount": 0.6, "count": 30}
    assert report["tenants"]["tenant-b"]["charged"]["count"] == 20
    assert report["tenants"]["tenant-b"]["possible"] == {"amount": 0.04, "count": 2}
    assert batches.batch_status(b.batch_id)["spend"]["possible"]["count"] == 2
    budgets = {row["tenant"]: row for row in spend.list_budgets()}
    assert budgets["tenant-a"]["today"] == {"charged": 0.6, "possible": 0.0, "reserved": 0.0}
    print(f"\nsimulator submits by status {dict(seen)}; spend {report['charged']}, "
          f"possible {report['possible']}")  # fmt: skip


def _status(job_id: uuid.UUID) -> str:
    with session_scope() as session:
        return str(session.scalar(select(Job.status).where(Job.id == job_id)))
