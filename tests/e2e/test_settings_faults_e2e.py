"""Faults that need workers with settings of their own: each test starts its workers."""

from __future__ import annotations

import time

import pytest

from tests.waiting import predictions_created, tagged_prompt, wait_for
from worker.service import jobs
from worker.store import fleet

pytestmark = pytest.mark.e2e


def _prompt(tokens: str) -> str:
    return tagged_prompt("fault", tokens)


def test_ambiguous_submit_policy_fail_never_resubmits(
    configured, start_worker, simulator_url
) -> None:
    # Given workers told never to resubmit after an ambiguous submission
    start_worker(IMAGEGEN_AMBIGUOUS_SUBMIT="fail")
    prompt = _prompt("[sim:ghost_500] [sim:recover_after=1]")
    # When the first submit creates a prediction but answers 500
    job_id = jobs.enqueue({"prompt": prompt})
    view = wait_for([job_id], timeout_s=60)[job_id]
    # Then the job fails as ambiguous and is counted, with no second prediction
    assert (view["status"], view["error_code"]) == ("failed", "ambiguous_submit"), view
    assert view["ambiguous_submits"] == 1
    assert predictions_created(simulator_url, prompt) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"IMAGEGEN_STORAGE_URL": "s3://no-such-bucket-here/images"},
        {"IMAGEGEN_S3_ENDPOINT_URL": "http://127.0.0.1:9"},
    ],
    ids=["missing bucket", "store down"],
)
def test_a_store_that_refuses_writes_means_nothing_is_submitted(
    configured, start_worker, simulator_url, overrides
) -> None:
    # Given a worker whose object store refuses uploads (missing bucket) or is down
    start_worker(**overrides)
    prompt = _prompt("storage")
    job_id = jobs.enqueue({"prompt": prompt})

    # When the fleet has had time to submit it
    _wait_paused_by_storage(60)
    time.sleep(3)

    # Then nothing was submitted (nothing paid for an image that could not be kept): the job
    # waits in the queue for storage to come back
    assert jobs.status(job_id)["status"] == "queued"
    assert predictions_created(simulator_url, prompt) == 0


def _wait_paused_by_storage(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = fleet.read_fleet_state()
        if state.paused and state.pause_code == "storage":
            return
        time.sleep(0.3)
    pytest.fail("submissions were not paused for storage")
