"""The `imagegen` command as a user runs it, against real Postgres (no mocks)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text

from tests.harness import run_imagegen
from worker.db.engine import get_engine

pytestmark = pytest.mark.integration


run = run_imagegen  # the installed command, as an operator runs it


def row_counts() -> tuple[int, int]:
    with get_engine().connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM jobs")).scalar_one(),
            conn.execute(text("SELECT count(*) FROM job_events")).scalar_one(),
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", ""], "prompt: String should have at least 1 character"),
        (["enqueue", "x" * 2001], "prompt: String should have at most 2000 characters"),
        (["enqueue", "cat", "--aspect-ratio", "5:4"], "aspect_ratio: Input should be"),
        (["enqueue", "cat", "--resolution", "8k"], "resolution: Input should be"),
        (["enqueue", "cat", "--seed", "0"], "seed: Input should be greater than or equal to 1"),
        (["enqueue", "cat", "--seed", "2147483648"], "seed: Input should be less than or equal"),
        (["enqueue", "cat", "--image", "http://example.com/a.png"], "scheme must be https"),
        (["enqueue", "cat", "--image", "https://192.168.1.5/a.png"], "private, loopback"),
        (["enqueue", "cat", "--priority", "urgent"], "priority: must be one of"),
        (["enqueue", "cat", "--idempotency-key", "k" * 201], "idempotency_key: must be 1 to 200"),
        (["status", "not-a-uuid"], "job_id: must be a job id"),
        (["cancel", "12"], "job_id: must be a job id"),
    ],
)
def test_bad_input_exits_2_names_the_field_and_writes_nothing(
    configured, service_env, args, message
) -> None:
    before = row_counts()
    done = run(service_env, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in " ".join(done.stderr.split()), done.stderr
    assert row_counts() == before


def test_enqueue_json_then_status_and_cancel(configured, service_env) -> None:
    # broker down on purpose: the job is still recorded, and the failure to nudge is logged
    env = {**service_env, "IMAGEGEN_BROKER_URL": "redis://127.0.0.1:1/0"}
    done = run(env, "enqueue", "a quiet harbour", "-a", "16:9", "-r", "4k", "--seed", "7", "--json")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    view = json.loads(run(service_env, "status", job_id, "--json").stdout)
    assert view["status"] == "queued"
    assert view["request"] == {
        "prompt": "a quiet harbour",
        "aspect_ratio": "16:9",
        "resolution": "4K",
        "seed": 7,
    }
    cancelled = run(service_env, "cancel", job_id, "--json")
    assert json.loads(cancelled.stdout)["status"] == "cancelled"


def test_idempotency_key_returns_the_same_job(configured, service_env) -> None:
    key = f"order-{uuid.uuid4()}"
    first = run(service_env, "enqueue", "one cat", "--idempotency-key", key, "--json")
    second = run(service_env, "enqueue", "one cat", "--idempotency-key", key, "--json")
    assert json.loads(first.stdout)["id"] == json.loads(second.stdout)["id"]
    assert row_counts()[0] == 1


def test_unknown_job_exits_1(configured, service_env) -> None:
    done = run(service_env, "status", str(uuid.uuid4()))
    assert done.returncode == 1
    assert "no job with id" in done.stderr


def test_bad_configuration_names_the_variable(service_env) -> None:
    done = run({**service_env, "IMAGEGEN_POLL_INTERVAL_S": "soon"}, "status", str(uuid.uuid4()))
    assert done.returncode == 2
    assert "IMAGEGEN_POLL_INTERVAL_S" in done.stderr
