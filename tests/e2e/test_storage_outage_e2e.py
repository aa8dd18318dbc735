"""Storage that cannot be written never wastes a paid prediction: a missing bucket at start
pauses submissions (one line says why) until the bucket exists, and a bucket that disappears
while outputs are being copied pauses submissions and keeps the generated outputs waiting,
without spending their attempts, until a probe write succeeds. Real worker, beat, Postgres,
Redis, the S3 server and the simulator."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from sqlalchemy import select

from models import JobEvent
from tests import harness
from tests.waiting import predictions_created, tagged_prompt, wait_for
from worker.db.engine import session_scope
from worker.service import jobs
from worker.store import fleet

pytestmark = pytest.mark.e2e


def _fleet_paused_by_storage() -> bool:
    state = fleet.read_fleet_state()
    return bool(state.paused and state.pause_code == "storage")


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    pytest.fail(f"{what} did not happen within {timeout_s} s")


def _start(env: dict[str, str], tmp_path: Path) -> list[subprocess.Popen[bytes]]:
    worker = harness.start_worker(env, tmp_path / "worker.log")
    beat = harness.start_imagegen(
        {**env, "IMAGEGEN_DATA_DIR": str(tmp_path)}, tmp_path / "beat.log", "beat"
    )
    return [worker, beat]


def _working_then_lost(endpoint: str, bucket: str) -> None:
    """One job stored (the worker's preflight has passed), then the bucket deleted."""
    first = jobs.enqueue({"prompt": tagged_prompt("before"), "seed": 9})
    assert wait_for([first], timeout_s=90)[first]["status"] == "succeeded"
    assert not _fleet_paused_by_storage()
    s3 = boto3.client("s3", endpoint_url=endpoint)
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=bucket)


def test_a_missing_bucket_pauses_submissions_until_it_exists(
    configured: None,
    service_env: dict[str, str],
    simulator_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a service-mode deployment whose bucket was never created
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    env = {**service_env, "IMAGEGEN_STORAGE_URL": f"s3://{bucket}/images"}
    monkeypatch.setenv("IMAGEGEN_STORAGE_URL", env["IMAGEGEN_STORAGE_URL"])
    procs = _start(env, tmp_path)
    try:
        # When the worker starts and a job is enqueued
        _wait(_fleet_paused_by_storage, 60, "the storage pause")
        prompt = tagged_prompt("nobucket")
        job_id = jobs.enqueue({"prompt": prompt, "seed": 3})
        time.sleep(4)

        # Then it said why in one line, and nothing was submitted (nothing paid for)
        lines = [
            line
            for line in (tmp_path / "worker.log").read_text().splitlines()
            if "preflight:" in line and "storage" in line
        ]
        assert lines and "the bucket does not exist" in lines[0] and bucket in lines[0]
        assert "IMAGEGEN_STORAGE_URL" in lines[0]
        assert jobs.status(job_id)["status"] == "queued"
        assert predictions_created(simulator_url, prompt) == 0

        # When the bucket is created, the queued work runs without a restart
        harness.create_bucket(service_env["IMAGEGEN_S3_ENDPOINT_URL"], bucket)
        view = wait_for([job_id], timeout_s=90)[job_id]
        assert view["status"] == "succeeded", view
        assert not _fleet_paused_by_storage()
    finally:
        for proc in reversed(procs):
            harness.stop_process(proc)


def test_a_bucket_lost_mid_copy_keeps_paid_outputs_waiting(
    configured: None,
    service_env: dict[str, str],
    simulator_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a running fleet whose bucket exists at start...
    endpoint = service_env["IMAGEGEN_S3_ENDPOINT_URL"]
    bucket = f"lost-{uuid.uuid4().hex[:8]}"
    harness.create_bucket(endpoint, bucket)
    env = {**service_env, "IMAGEGEN_STORAGE_URL": f"s3://{bucket}/images"}
    monkeypatch.setenv("IMAGEGEN_STORAGE_URL", env["IMAGEGEN_STORAGE_URL"])
    procs = _start(env, tmp_path)
    try:
        _working_then_lost(endpoint, bucket)  # ...and is gone once predictions are paid for
        ids = [jobs.enqueue({"prompt": tagged_prompt("lost"), "seed": n}) for n in range(1, 4)]

        # When the copies fail for as long as the bucket is missing
        _wait(_fleet_paused_by_storage, 60, "the storage pause")
        time.sleep(3)
        assert all(jobs.status(i)["status"] in ("transferring", "queued") for i in ids)

        # Then, once it is back, every job finishes; no copy attempt was spent on the outage
        harness.create_bucket(endpoint, bucket)
        views = wait_for(ids, timeout_s=120)
        assert [v["status"] for v in views.values()] == ["succeeded"] * 3, views
        assert all(v["transfer_attempts"] == 1 for v in views.values()), views
        _wait(lambda: not _fleet_paused_by_storage(), 30, "the probe lifting the pause")
        with session_scope() as session:
            refunded = session.scalars(
                select(JobEvent).where(JobEvent.job_id.in_(ids), JobEvent.event == "transfer_retry")
            ).all()
        assert refunded and all(e.detail and e.detail.get("attempt_refunded") for e in refunded)
    finally:
        for proc in reversed(procs):
            harness.stop_process(proc)


def test_storage_down_past_the_output_urls_lifetime_fails_storage_error(
    configured: None,
    service_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a fleet told that output URLs live 4 s, whose bucket disappears after it started
    endpoint = service_env["IMAGEGEN_S3_ENDPOINT_URL"]
    bucket = f"gone-{uuid.uuid4().hex[:8]}"
    harness.create_bucket(endpoint, bucket)
    env = {
        **service_env,
        "IMAGEGEN_STORAGE_URL": f"s3://{bucket}/images",
        "IMAGEGEN_OUTPUT_URL_TTL_S": "4",
    }
    monkeypatch.setenv("IMAGEGEN_STORAGE_URL", env["IMAGEGEN_STORAGE_URL"])
    procs = _start(env, tmp_path)
    try:
        _working_then_lost(endpoint, bucket)

        # When a generated output cannot be stored for longer than its URL lives
        job_id = jobs.enqueue({"prompt": tagged_prompt("gone"), "seed": 2})
        view = wait_for([job_id], timeout_s=90)[job_id]

        # Then the job fails storage_error, saying why, with nothing stored
        assert (view["status"], view["error_code"]) == ("failed", "storage_error"), view
        assert "IMAGEGEN_OUTPUT_URL_TTL_S" in view["error_message"]
        assert view["images"] == []
    finally:
        for proc in reversed(procs):
            harness.stop_process(proc)
