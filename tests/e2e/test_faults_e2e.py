"""Every provider and storage fault of the contract (sections 3-5), driven through a real worker
process against the simulator over HTTP, ends in a named state with its reason recorded.

Faults are forced per job with the simulator's prompt tokens (``[sim:NAME=ARG]``);
``[sim:recover_after=N]`` makes a submit fault hit only the first N submits.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.waiting import predictions_created, tagged_prompt, wait_for
from worker.service import jobs

pytestmark = pytest.mark.e2e


def _prompt(tokens: str) -> str:
    return tagged_prompt("fault", tokens)


# (tokens, final status, error code, ambiguous submits, predictions created)
CASES = [
    # section 3: errors of the submit call
    ("[sim:http_429] [sim:recover_after=2]", "succeeded", None, 0, 1),
    ("[sim:http_429_retry_after=1] [sim:recover_after=1]", "succeeded", None, 0, 1),
    ("[sim:http_500] [sim:recover_after=1]", "succeeded", None, 1, 1),
    ("[sim:http_502] [sim:recover_after=1]", "succeeded", None, 1, 1),
    ("[sim:http_503=html] [sim:recover_after=1]", "succeeded", None, 1, 1),
    ("[sim:http_504] [sim:recover_after=1]", "succeeded", None, 1, 1),
    ("[sim:http_500]", "failed", "retries_exhausted", 6, 0),
    ("[sim:content_policy]", "failed", "content_policy", 0, 0),
    ("[sim:invalid_params]", "failed", "invalid_request", 0, 0),
    # section 2: how a prediction ends, and how the answers drift
    ("[sim:failed=ModelUnavailable]", "failed", "provider_failed", 0, 1),
    ("[sim:failed=CreationPolicyViolation]", "failed", "content_policy", 0, 1),
    ("[sim:failed=5004]", "failed", "provider_failed", 0, 1),
    ("[sim:failed=1401]", "failed", "invalid_request", 0, 1),
    ("[sim:no_output]", "failed", "no_output", 0, 1),
    ("[sim:status_alias=a]", "succeeded", None, 0, 1),
    ("[sim:status_alias=b] [sim:submit_processing] [sim:nsfw_null]", "succeeded", None, 0, 1),
    ("[sim:poll_500=2] [sim:poll_429=1]", "succeeded", None, 0, 1),
    # section 4: outputs
    ("[sim:output_expired=403]", "failed", "output_unavailable", 0, 1),
    ("[sim:output_expired=404]", "failed", "output_unavailable", 0, 1),
    ("[sim:output_truncated=1]", "succeeded", None, 0, 1),
    ("[sim:output_truncated=always]", "failed", "output_unavailable", 0, 1),
    ("[sim:output_mislabelled=text/html]", "succeeded", None, 0, 1),
    ("[sim:output_slow=200000]", "succeeded", None, 0, 1),
    # section 5: ghost predictions (created, then answered badly): flagged and counted
    ("[sim:ghost_500=502] [sim:recover_after=1]", "succeeded", None, 1, 2),
    ("[sim:ghost_slow=8] [sim:recover_after=1]", "succeeded", None, 1, 2),
]


def test_every_fault_ends_in_its_named_state(configured, module_worker, simulator_url) -> None:
    # Given one job per documented provider fault, all enqueued together
    prompts = {tokens: _prompt(tokens) for tokens, *_ in CASES}
    job_ids = {tokens: jobs.enqueue({"prompt": prompt}) for tokens, prompt in prompts.items()}
    # When a real worker takes them all to the end
    views = wait_for(job_ids.values(), timeout_s=180)
    # Then each ends in its expected state, with its reason, and possible duplicates counted
    wrong = []
    for tokens, status, code, ambiguous, predictions in CASES:
        view = views[job_ids[tokens]]
        got = (
            view["status"],
            view["error_code"],
            view["ambiguous_submits"],
            predictions_created(simulator_url, prompts[tokens]),
        )
        if got != (status, code, ambiguous, predictions):
            wrong.append(
                f"{tokens}: expected {(status, code, ambiguous, predictions)}, got "
                f"{got} ({view['error_message']})"
            )
        stored = len(view["images"])
        if stored != (1 if status == "succeeded" else 0) or (not view["error_message"] and code):
            wrong.append(f"{tokens}: {stored} images, message {view['error_message']!r}")
    assert wrong == [], "\n".join(wrong)


def test_several_outputs_are_all_stored(configured, module_worker) -> None:
    job_id = jobs.enqueue({"prompt": _prompt("[sim:multi_output=3] [sim:nsfw]")})
    view = wait_for([job_id], timeout_s=60)[job_id]
    assert view["status"] == "succeeded", view
    assert [image["index"] for image in view["images"]] == [0, 1, 2]
    assert len({image["sha256"] for image in view["images"]}) == 3
    assert all(image["nsfw"] is not None for image in view["images"])


@pytest.mark.parametrize("fault", ["[sim:http_401]", "[sim:http_403]", "[sim:http_403=permission]"])
def test_key_and_balance_refusals_keep_the_job_queued(
    configured, module_worker, simulator_url, fault
) -> None:
    # Given a provider that refuses the key or has no balance left
    prompt = _prompt(fault)
    job_id = jobs.enqueue({"prompt": prompt})
    # When the worker tries to submit
    view = wait_for([job_id], timeout_s=60, until=lambda v: v["error_message"] is not None)
    # Then the job is not failed: it waits, queued, without spending its retry budget
    assert view[job_id]["status"] == "queued"
    assert view[job_id]["attempts"] == 0
    assert "HTTP 40" in view[job_id]["error_message"]


def test_stuck_prediction_ends_at_the_deadline(configured, module_worker) -> None:
    job_id = jobs.enqueue({"prompt": _prompt("[sim:stuck]")}, deadline_s=4)
    view = wait_for([job_id], timeout_s=60)[job_id]
    assert (view["status"], view["error_code"]) == ("failed", "deadline_exceeded"), view
    assert view["poll_count"] >= 2


def test_cancel_while_running_copies_nothing(configured, module_worker, simulator_url) -> None:
    job_id = jobs.enqueue({"prompt": _prompt("cancel"), "resolution": "4K"})
    wait_for([job_id], timeout_s=30, until=lambda v: v["status"] == "running")
    assert jobs.cancel(job_id) == "cancelled"
    view = jobs.status(job_id)
    prediction_id = view["prediction_id"]
    record = httpx.get(f"{simulator_url}/_sim/predictions/{prediction_id}").json()
    time.sleep(3.0)  # longer than the generation: a late poll would see it done
    view = jobs.status(job_id)
    assert view["status"] == "cancelled" and view["images"] == []
    downloads = httpx.get(f"{simulator_url}/_sim/stats").json()["downloads_per_prediction"]
    assert downloads.get(record["id"], 0) == 0


def test_cancel_during_transfer_leaves_no_object_and_no_row(
    configured, module_worker, service_env
) -> None:
    import boto3

    # Given a job whose output is being copied slowly
    job_id = jobs.enqueue({"prompt": _prompt("[sim:output_slow=60000]")})
    wait_for([job_id], timeout_s=30, until=lambda v: v["status"] == "transferring")
    # When it is cancelled mid-copy
    assert jobs.cancel(job_id) == "cancelled"
    time.sleep(8)  # the copy in flight finishes or breaks off; the discard runs
    # Then nothing of it is left in storage or in the image table
    s3 = boto3.client("s3", endpoint_url=service_env["IMAGEGEN_S3_ENDPOINT_URL"])
    listing = s3.list_objects_v2(Bucket="imagegen-test", Prefix="images/")
    assert [o["Key"] for o in listing.get("Contents", []) if str(job_id) in o["Key"]] == []
    assert jobs.status(job_id)["images"] == []
