"""Two queues through real workers: the steps that keep jobs moving (``imagegen``) and the copies
to storage (``imagegen.transfer``). A worker takes only the queues it is given, so copies can
have workers of their own and a burst of them never holds up polls and dispatch cycles."""

from __future__ import annotations

import time
import uuid

import pytest
import redis as redis_lib

from tests.harness import stop_process
from tests.waiting import wait_for
from worker.service import jobs

pytestmark = pytest.mark.e2e

REQUEST = {"aspect_ratio": "1:1", "resolution": "1080p"}


def waiting_messages(redis_url: str, queue: str) -> int:
    client = redis_lib.Redis.from_url(redis_url)
    try:
        return int(client.llen(queue))
    finally:
        client.close()


def test_each_worker_takes_only_its_queues(
    configured, start_worker, beat_process, redis_url
) -> None:
    # Given a fleet whose only worker takes the steps queue
    steps = start_worker(IMAGEGEN_WORKER_QUEUES="imagegen")
    run = uuid.uuid4().hex[:8]
    ids = [jobs.enqueue({"prompt": f"queues {run} #{n}", **REQUEST}) for n in range(4)]

    # When the jobs are generated, their copies wait in their own queue: nothing takes them
    wait_for(ids, 120, until=lambda view: view["status"] == "transferring")
    time.sleep(2)
    assert {jobs.status(job_id)["status"] for job_id in ids} == {"transferring"}
    assert waiting_messages(redis_url, "imagegen.transfer") >= 1

    # Then a worker for the copies alone finishes them
    start_worker(IMAGEGEN_WORKER_QUEUES="imagegen.transfer")
    views = wait_for(ids, 120)
    assert {view["status"] for view in views.values()} == {"succeeded"}
    assert all(view["images"] for view in views.values())

    # And without a steps worker, the copies' worker submits nothing
    stop_process(steps)
    late = jobs.enqueue({"prompt": f"queues {run} late", **REQUEST})
    time.sleep(3)
    assert jobs.status(late)["status"] == "queued"
