"""`/healthz`, `/readyz` and `/metrics` of the API (api/ops.py) against the real database,
broker and S3 server, and transition counting against real Postgres transactions.

The router is mounted on a bare FastAPI app served by uvicorn, so these tests do not depend on
the rest of the API; the producers' app includes the same router.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from api.routes.ops import router
from models.base import utcnow
from tests.harness import free_port
from worker.core.settings import reset_settings
from worker.core.states import JobStatus
from worker.db.engine import get_engine, reset_engine, session_scope
from worker.service import jobs
from worker.store import transitions
from worker.telemetry import metrics

pytestmark = pytest.mark.integration


@pytest.fixture
def client(configured) -> Iterator[httpx.Client]:
    """The router on a bare app, served by uvicorn over real HTTP in a thread."""
    app = FastAPI()
    app.include_router(router)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.config.port
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        yield http
    server.should_exit = True
    thread.join(10)


def reconfigure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    reset_engine()


def samples(body: str) -> dict[str, float]:
    return {
        f"{s.name}{dict(sorted(s.labels.items()))}": s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


# --- health -----------------------------------------------------------------------------------


def test_healthz_says_the_process_is_up(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_storage(client: httpx.Client) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "storage": True,
    }


@pytest.mark.parametrize(
    ("variable", "value", "failing", "says"),
    [
        (
            "IMAGEGEN_BROKER_URL",
            "redis://:hunter2secret@127.0.0.1:1/0",
            "broker",
            "ConnectionError",
        ),
        ("IMAGEGEN_S3_ENDPOINT_URL", "http://127.0.0.1:1", "storage", "EndpointConnectionError"),
        (
            "IMAGEGEN_DATABASE_URL",
            "postgresql+psycopg://postgres:hunter2secret@127.0.0.1:1/nothing",
            "database",
            "OperationalError",
        ),
    ],
)
def test_readyz_answers_503_naming_what_is_unreachable(
    client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    failing: str,
    says: str,
) -> None:
    # Given one dependency that cannot be reached
    reconfigure(monkeypatch, **{variable: value, "IMAGEGEN_READY_TIMEOUT_S": "1.5"})
    # When the orchestrator probes readiness
    answer = client.get("/readyz")
    # Then it hears 503, which check failed and why, without the password
    assert answer.status_code == 503
    checks = answer.json()["checks"]
    assert [name for name, check in checks.items() if not check["ok"]] == [failing]
    assert says in checks[failing]["detail"]
    assert "hunter2secret" not in answer.text
    assert checks[failing]["ms"] < 5000


def test_readyz_gives_up_on_a_dependency_that_hangs(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    # a listening socket that never accepts: connecting works, nothing ever answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        port = silent.getsockname()[1]
        reconfigure(
            monkeypatch,
            IMAGEGEN_S3_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            IMAGEGEN_READY_TIMEOUT_S="1",
        )
        started = time.monotonic()
        answer = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert answer.status_code == 503
    storage = answer.json()["checks"]["storage"]
    # whichever comes first: our wait, or the client's own read timeout (the same second)
    assert storage["ok"] is False
    assert storage["detail"] == "no answer within 1 s" or "Timeout" in storage["detail"]
    assert elapsed < 3  # bounded by the timeout, not by the hanging endpoint


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_show_the_queue_as_the_table_has_it(client: httpx.Client) -> None:
    # Given two queued jobs (one of them ten minutes old, batch priority) and a running one
    old = jobs.enqueue({"prompt": "old"}, priority="batch", dispatch=False)
    jobs.enqueue({"prompt": "new"}, dispatch=False)
    running = jobs.enqueue({"prompt": "busy"}, dispatch=False)
    with get_engine().begin() as conn:
        conn.execute(
            text("UPDATE jobs SET created_at = :at WHERE id = :id"),
            {"at": utcnow() - timedelta(minutes=10), "id": old},
        )
        conn.execute(text("UPDATE jobs SET status = 'running' WHERE id = :id"), {"id": running})
    metrics.refresh_queue_metrics()

    # When Prometheus scrapes the API
    answer = client.get("/metrics")

    # Then the queue gauges match the table
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = samples(answer.text)
    assert found["imagegen_jobs{'status': 'queued'}"] == 2
    assert found["imagegen_jobs{'status': 'running'}"] == 1
    assert found["imagegen_jobs{'status': 'transferring'}"] == 0
    assert found["imagegen_queue_depth{'priority': 'batch'}"] == 1
    assert found["imagegen_queue_depth{'priority': 'interactive'}"] == 1
    assert found["imagegen_queue_due{}"] == 2
    assert 600 <= found["imagegen_queue_oldest_age_seconds{}"] < 700
    assert found["imagegen_queue_read_up{}"] == 1
    # and the process counters are there too, with bounded labels only
    assert "imagegen_job_transitions_total" in answer.text
    assert str(old) not in answer.text


def test_metrics_still_answer_when_the_database_is_down(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    reconfigure(monkeypatch, IMAGEGEN_DATABASE_URL="postgresql+psycopg://x@127.0.0.1:1/x")
    metrics.refresh_queue_metrics()
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert samples(answer.text)["imagegen_queue_read_up{}"] == 0


# --- transitions are counted when they commit --------------------------------------------------


def counted(source: str, target: str) -> float:
    labels = {"from_status": source, "to_status": target}
    return REGISTRY.get_sample_value("imagegen_job_transitions_total", labels) or 0.0


def polls() -> tuple[float, float]:
    return (
        REGISTRY.get_sample_value("imagegen_job_polls_count") or 0.0,
        REGISTRY.get_sample_value("imagegen_job_polls_sum") or 0.0,
    )


def test_a_rolled_back_transition_is_not_counted(configured) -> None:
    job_id = jobs.enqueue({"prompt": "undecided"}, dispatch=False)
    before = counted("queued", "cancelled")
    with pytest.raises(RuntimeError), session_scope() as session:
        assert (
            transitions.cancel(session, job_id=job_id, reason="changed my mind") is JobStatus.QUEUED
        )
        raise RuntimeError("rolled back")
    assert counted("queued", "cancelled") == before
    with session_scope() as session:
        transitions.cancel(session, job_id=job_id, reason="for real")
    assert counted("queued", "cancelled") == before + 1


def test_polls_per_job_are_observed_when_it_leaves_running(configured) -> None:
    job_id = jobs.enqueue({"prompt": "polled"}, dispatch=False)
    with get_engine().begin() as conn:
        conn.execute(
            text("UPDATE jobs SET status = 'running', poll_count = 7 WHERE id = :id"),
            {"id": job_id},
        )
    count, total = polls()
    with session_scope() as session:
        transitions.fail(
            session,
            job_id=job_id,
            sources=[JobStatus.RUNNING],
            code="provider_failed",
            message="no",
        )
    assert polls() == (count + 1, total + 7)
    assert counted("running", "failed") >= 1


def test_operator_retries_are_counted(configured) -> None:
    job_id = jobs.enqueue({"prompt": "again"}, dispatch=False)
    with session_scope() as session:
        transitions.fail(session, job_id=job_id, sources=[JobStatus.QUEUED], code="x", message="y")
    before = counted("failed", "queued")
    with session_scope() as session:
        moved = transitions.retry_failed(
            session, job_ids=[job_id, uuid.uuid4()], deadline_at=utcnow() + timedelta(hours=1)
        )
    assert moved == [job_id]
    assert counted("failed", "queued") == before + 1
