"""The pipeline's steps against real Postgres, the simulator over HTTP and moto's S3 server.

No Celery here: the steps are called directly, as duplicate or late deliveries would call
them, to show that every step is a guarded transition.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest

from worker.broker.wiring import get_pipeline
from worker.service import jobs

pytestmark = pytest.mark.integration


def _unique(prompt: str) -> str:
    return f"{prompt} {uuid.uuid4().hex[:8]}"


def _drive(job_id: uuid.UUID, first: str = "submit", limit: int = 200) -> None:
    """Carry out the steps the pipeline asks for, in this thread, until none is left."""
    pipeline = get_pipeline()
    step: str | None = first
    for _ in range(limit):
        if step is None:
            return
        outcome = getattr(pipeline, step)(job_id)
        if outcome is None:
            return
        time.sleep(min(outcome.delay_s, 0.5))
        step = outcome.step
    pytest.fail("the job did not settle")


def test_concurrent_duplicate_submits_reach_the_provider_once(configured, simulator_url) -> None:
    # Given one queued job
    prompt = _unique("duplicate delivery")
    job_id = jobs.enqueue({"prompt": prompt}, dispatch=False)
    pipeline = get_pipeline()
    # When eight deliveries of its submit task run at the same time
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(pipeline.submit(job_id))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one went out, and the others did nothing
    assert sum(result is not None for result in results) == 1
    stats = httpx.get(f"{simulator_url}/_sim/stats").json()
    assert stats["submissions_per_prompt"][prompt] == 1
    assert jobs.status(job_id)["status"] == "running"


def test_steps_run_again_after_success_change_nothing(configured) -> None:
    # Given a job driven to success
    job_id = jobs.enqueue(
        {"prompt": _unique("late delivery"), "resolution": "1080p"}, dispatch=False
    )
    _drive(job_id)
    before = jobs.status(job_id)
    assert before["status"] == "succeeded", before
    # When every step is delivered once more, late
    pipeline = get_pipeline()
    assert pipeline.submit(job_id) is None
    assert pipeline.poll(job_id) is None
    assert pipeline.transfer(job_id) is None
    # Then nothing moved and no image row was added
    after = jobs.status(job_id)
    assert after["images"] == before["images"]
    assert after["events"] == before["events"]


@pytest.mark.parametrize(
    ("marker", "code"),
    [
        ("[sim:content_policy]", "content_policy"),
        ("[sim:invalid_params]", "invalid_request"),
        ("[sim:failed=InternalServiceFailure]", "provider_failed"),
        ("[sim:failed=1200]", "content_policy"),
        ("[sim:no_output]", "no_output"),
        ("[sim:output_expired]", "output_unavailable"),
    ],
)
def test_provider_outcomes_end_with_named_codes(configured, marker: str, code: str) -> None:
    # Given a job whose prediction meets a provider fault
    job_id = jobs.enqueue({"prompt": _unique(f"fault {marker}")}, dispatch=False)
    # When the pipeline runs it to the end
    _drive(job_id)
    # Then it failed with the named code and a reason
    view = jobs.status(job_id)
    assert (view["status"], view["error_code"]) == ("failed", code), view
    assert view["error_message"]
    assert view["images"] == []


def test_schema_drift_is_tolerated(configured) -> None:
    # Given a provider answering with the documented variants
    prompt = _unique("drift [sim:urls_list] [sim:error_empty] [sim:date_rfc3339] [sim:nsfw]")
    job_id = jobs.enqueue({"prompt": prompt}, dispatch=False)
    # When the job runs
    _drive(job_id)
    # Then it succeeds and records the NSFW flag per image
    view = jobs.status(job_id)
    assert view["status"] == "succeeded", view
    assert view["images"][0]["nsfw"] is True


def test_cancel_stops_every_later_step(configured) -> None:
    # Given a job whose prediction is running at the provider
    job_id = jobs.enqueue({"prompt": _unique("cancel me")}, dispatch=False)
    pipeline = get_pipeline()
    assert pipeline.submit(job_id) is not None
    # When it is cancelled
    assert jobs.cancel(job_id) == "cancelled"
    # Then polling and copying do nothing, and no image is stored
    assert pipeline.poll(job_id) is None
    assert pipeline.transfer(job_id) is None
    view = jobs.status(job_id)
    assert view["status"] == "cancelled" and view["images"] == []
    assert jobs.cancel(job_id) == "cancelled"  # cancelling twice is harmless
