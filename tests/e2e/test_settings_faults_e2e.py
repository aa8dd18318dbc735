"""Faults that need workers with settings of their own: each test starts its workers."""

from __future__ import annotations

import pytest

from tests.waiting import predictions_created, tagged_prompt, wait_for
from worker.service import jobs

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
    ("overrides", "code"),
    [
        ({"IMAGEGEN_STORAGE_URL": "s3://no-such-bucket-here/images"}, "storage_error"),
        ({"IMAGEGEN_S3_ENDPOINT_URL": "http://127.0.0.1:9"}, "storage_error"),
    ],
)
def test_storage_faults_end_as_storage_error(configured, start_worker, overrides, code) -> None:
    # Given a worker whose object store refuses uploads (missing bucket) or is down
    start_worker(IMAGEGEN_MAX_TRANSFER_ATTEMPTS="2", **overrides)
    job_id = jobs.enqueue({"prompt": _prompt("storage")})
    # When it copies the output
    view = wait_for([job_id], timeout_s=120)[job_id]
    # Then the job fails with storage_error, no image recorded, after retrying
    assert (view["status"], view["error_code"]) == ("failed", code), view
    assert view["transfer_attempts"] == 2
    assert view["images"] == []
