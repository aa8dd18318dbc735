"""`imagegen check` and one-line errors: an operator learns in one line which dependency is
unreachable or misconfigured and which variable to fix (real Postgres, Redis, S3 server)."""

from __future__ import annotations

import uuid

import pytest

from tests.harness import run_imagegen

pytestmark = pytest.mark.integration

DOWN_DB = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/nowhere"
COMMANDS = [
    ["status", str(uuid.uuid4())],
    ["cancel", str(uuid.uuid4())],
    ["enqueue", "a cat"],
    ["jobs", "list"],
    ["pause", "--reason", "x"],
    ["resume"],
    ["retry", "--failed"],
    ["prune", "--older-than", "3d", "--dry-run"],
    ["batch", "status", str(uuid.uuid4())],
    ["export", "/tmp/imagegen-never", "--batch", str(uuid.uuid4())],
]


def test_check_passes_on_a_working_deployment(service_env: dict[str, str]) -> None:
    done = run_imagegen(service_env, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["ok", "database"],
        ["ok", "broker"],
        ["ok", "storage"],
        ["ok", "provider"],
    ]


def test_check_names_what_to_fix(service_env: dict[str, str]) -> None:
    env = {
        **service_env,
        "IMAGEGEN_STORAGE_URL": f"s3://absent-{uuid.uuid4().hex[:6]}/images",
        "IMAGEGEN_BROKER_URL": "redis://127.0.0.1:1/0",
        "GPTPROTO_API_KEY": "",
    }
    done = run_imagegen(env, "check")
    assert done.returncode == 1
    failed = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith("FAIL")}
    assert set(failed) == {"broker", "storage", "provider"}
    assert "IMAGEGEN_BROKER_URL" in failed["broker"]
    assert "the bucket does not exist" in failed["storage"]
    assert "IMAGEGEN_STORAGE_URL" in failed["storage"]
    assert "GPTPROTO_API_KEY" in failed["provider"]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_unreachable_database_is_one_line(service_env: dict[str, str], args: list[str]) -> None:
    done = run_imagegen({**service_env, "IMAGEGEN_DATABASE_URL": DOWN_DB}, *args)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr[:2000]
    assert "cannot reach the database" in done.stderr and "IMAGEGEN_DATABASE_URL" in done.stderr
    assert "s3cret" not in done.stderr


def test_a_worker_without_its_database_stops_with_one_line(service_env: dict[str, str]) -> None:
    done = run_imagegen({**service_env, "IMAGEGEN_DATABASE_URL": DOWN_DB}, "worker")
    assert done.returncode == 1
    assert "preflight: database: cannot reach the database" in done.stderr
