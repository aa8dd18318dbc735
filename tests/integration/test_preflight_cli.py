"""`imagegen check` and one-line errors: an operator learns in one line which dependency is
unreachable or misconfigured and which variable to fix (real Postgres, Redis, S3 server)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.harness import run_imagegen, start_worker, stop_process

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


def test_a_refused_provider_key_is_found_before_any_work(service_env: dict[str, str]) -> None:
    # Given a key the provider does not accept (the simulator takes only the suite's)
    wrong = {**service_env, "GPTPROTO_API_KEY": "sk-wrong-key-5d1e0c3a9b"}
    # When an operator checks, and a worker starts
    checked = run_imagegen(wrong, "check")
    started = run_imagegen(wrong, "worker")
    # Then both say in one line that the key was refused (a free query, no charge), the worker
    # takes no work, and the key itself is printed nowhere
    assert checked.returncode == 1
    (line,) = [line for line in checked.stdout.splitlines() if line.startswith("FAIL")]
    assert line.split()[1] == "provider" and "refused GPTPROTO_API_KEY (401)" in line
    assert started.returncode == 1
    assert "preflight: provider:" in started.stderr and "(401)" in started.stderr
    for output in (checked.stdout, checked.stderr, started.stdout, started.stderr):
        assert "sk-wrong-key-5d1e0c3a9b" not in output


def test_a_provider_that_cannot_be_asked_is_reported_and_a_worker_still_starts(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a provider that cannot be reached at start (an outage, not a misconfiguration)
    down = {**service_env, "GPTPROTO_BASE_URL": "http://127.0.0.1:1"}
    # When an operator checks, the provider line fails (exit 1) and says why
    checked = run_imagegen(down, "check", "--json")
    assert checked.returncode == 1
    provider = {c["name"]: c for c in json.loads(checked.stdout)["checks"]}["provider"]
    assert not provider["ok"] and "cannot ask http://127.0.0.1:1" in provider["detail"]
    # while a worker says so once and starts anyway (its submits wait for the provider)
    log = tmp_path / "worker.log"
    worker = start_worker(down, log)
    try:
        deadline = time.monotonic() + 60
        while "preflight: provider:" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)
        assert worker.poll() is None, log.read_text()[-2000:]
        assert "preflight: provider: cannot ask" in log.read_text()
    finally:
        stop_process(worker)
