"""Crashes and lost messages: a worker SIGKILLed mid-step, a flushed Redis. The reconciler
(`imagegen beat`) finds what was dropped and the job finishes, once."""

from __future__ import annotations

import hashlib
import time
import uuid

import boto3
import httpx
import pytest
import redis

from tests.conftest import BUCKET
from tests.waiting import wait_for
from worker.service import jobs

pytestmark = pytest.mark.e2e


def _prompt(tokens: str) -> str:
    return f"crash {uuid.uuid4().hex[:8]} {tokens}"


def _downloads_started(simulator_url: str, prediction_id: str) -> int:
    log = httpx.get(
        f"{simulator_url}/_sim/requests",
        params={"kind": "download", "prediction_id": prediction_id},
    ).json()
    return len(log["requests"])


def test_worker_killed_mid_transfer_leaves_one_object_and_row_per_output(
    configured, start_worker, beat_process, service_env, simulator_url
) -> None:
    # Given a job with two slow outputs being copied by a worker
    first = start_worker()
    job_id = jobs.enqueue({"prompt": _prompt("[sim:multi_output=2] [sim:output_slow=80000]")})
    view = wait_for([job_id], timeout_s=30, until=lambda v: v["status"] == "transferring")
    prediction_id = view[job_id]["prediction_id"]
    deadline = time.monotonic() + 30
    while _downloads_started(simulator_url, prediction_id) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)  # the second output is on its way: one stored, one half copied
    # When the worker is killed outright and another one takes over
    first.kill()
    first.wait()
    start_worker()
    view = wait_for([job_id], timeout_s=120)[job_id]
    # Then the job succeeded with exactly one object and one row per output, hashes equal
    assert view["status"] == "succeeded", view
    assert [image["index"] for image in view["images"]] == [0, 1]
    s3 = boto3.client("s3", endpoint_url=service_env["IMAGEGEN_S3_ENDPOINT_URL"])
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        if str(job_id) in o["Key"]
    ]
    assert sorted(keys) == sorted(image["key"] for image in view["images"])
    for image in view["images"]:
        body = s3.get_object(Bucket=BUCKET, Key=image["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == image["sha256"]
    assert view["transfer_attempts"] >= 2


def test_worker_killed_mid_submit_is_resubmitted_and_flagged(
    configured, start_worker, beat_process, simulator_url
) -> None:
    # Given a worker waiting on a submit the provider answers slowly (after creating it)
    first = start_worker(IMAGEGEN_SUBMIT_TIMEOUT_S="7")
    prompt = _prompt("[sim:ghost_slow=6] [sim:recover_after=1]")
    job_id = jobs.enqueue({"prompt": prompt})
    wait_for([job_id], timeout_s=30, until=lambda v: v["status"] == "submitting")
    time.sleep(1)
    # When that worker dies before the answer, and another one runs
    first.kill()
    first.wait()
    start_worker()
    view = wait_for([job_id], timeout_s=90)[job_id]
    # Then the job succeeded, and the possible duplicate charge is counted on the job
    assert view["status"] == "succeeded", view
    assert view["ambiguous_submits"] == 1
    stats = httpx.get(f"{simulator_url}/_sim/stats").json()
    assert stats["predictions_per_prompt"][prompt] == 2
    assert any(e["event"] == "submit_lease_expired" for e in view["events"])


def test_flushed_broker_loses_no_job(configured, start_worker, beat_process, service_env) -> None:
    # Given ten jobs whose messages are in Redis
    job_ids = [jobs.enqueue({"prompt": _prompt(f"flush {n}")}) for n in range(10)]
    # When Redis is flushed before any worker took them
    redis.Redis.from_url(service_env["IMAGEGEN_BROKER_URL"]).flushdb()
    start_worker()
    # Then the reconciler sends them again and all succeed
    views = wait_for(job_ids, timeout_s=90)
    assert {view["status"] for view in views.values()} == {"succeeded"}
    assert all(any(e["event"] == "redriven" for e in v["events"]) for v in views.values())
