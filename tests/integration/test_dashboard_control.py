"""Issue 14 on the dashboard, over real HTTP against real Postgres: the batch page's Cancel
button (confirmation, CSRF, then what `imagegen batch cancel` does), webhook deliveries and
metadata on the job and batch pages, short ids in the id box."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.dashboard import csrf_of, sign_in
from tests.integration.test_api_control import _batch_with_ids
from tests.producers import configure
from tests.stand_ins import RecordingPorts
from worker.service import batches, jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def client(
    configured, monkeypatch: pytest.MonkeyPatch, api_url: str, recorded: RecordingPorts
) -> Iterator[httpx.Client]:
    configure(monkeypatch)
    with httpx.Client(base_url=api_url, timeout=30) as browser:
        assert sign_in(browser).status_code == 303
        yield browser


def test_the_batch_page_cancels_the_batch_after_confirmation(client: httpx.Client) -> None:
    receipt = batches.enqueue_batch(
        [{"prompt": f"p{i}"} for i in range(3)], dispatch=False, metadata={"run": "nightly-7"}
    )
    path = f"/dashboard/batches/{receipt.batch_id}"
    page = client.get(path)
    assert page.status_code == 200
    assert f'action="{path}/cancel"' in page.text
    assert "nightly-7" in page.text  # the batch's metadata
    csrf = csrf_of(page.text)
    assert client.post(f"{path}/cancel", data={"confirmed": "yes"}).status_code == 403
    asked = client.post(f"{path}/cancel", data={"csrf": csrf})
    assert asked.status_code == 200 and "Cancel this batch?" in asked.text
    assert batches.batch_status(receipt.batch_id)["counts"]["queued"] == 3  # not yet
    done = client.post(
        f"{path}/cancel", data={"csrf": csrf, "confirmed": "yes"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"{path}?notice=batch_cancelled"
    assert batches.batch_status(receipt.batch_id)["counts"]["cancelled"] == 3
    after = client.get(path)
    assert f'action="{path}/cancel"' not in after.text  # completed: nothing left to cancel
    again = client.post(
        f"{path}/cancel", data={"csrf": csrf, "confirmed": "yes"}, follow_redirects=False
    )
    assert again.headers["location"].endswith("notice=batch_not_cancelled")


def test_job_and_batch_pages_show_webhook_deliveries_and_metadata(client: httpx.Client) -> None:
    job_id = jobs.enqueue(
        {"prompt": "a cat"},
        callback_url="http://127.0.0.1:9/hook",
        metadata={"order": "o-77"},
        dispatch=False,
    )
    before = client.get(f"/dashboard/jobs/{job_id}").text
    assert "Webhook deliveries" in before and "one is sent when the job ends" in before
    assert "o-77" in before
    jobs.cancel(job_id)
    page = client.get(f"/dashboard/jobs/{job_id}").text
    assert "job.cancelled" in page and 'data-delivery="' in page
    receipt = batches.enqueue_batch(
        [{"prompt": "x"}], callback_url="http://127.0.0.1:9/b", dispatch=False
    )
    jobs.cancel(receipt.job_ids[0])
    batch_page = client.get(f"/dashboard/batches/{receipt.batch_id}").text
    assert "batch.completed" in batch_page
    plain = batches.enqueue_batch([{"prompt": "y"}], dispatch=False)
    assert "No callback URL" in client.get(f"/dashboard/batches/{plain.batch_id}").text


def test_the_id_box_takes_short_ids(client: httpx.Client) -> None:
    receipt = batches.enqueue_batch([{"prompt": "x"}], dispatch=False)
    short_job = str(receipt.job_ids[0])[:8]
    job = client.get(f"/dashboard/lookup?id={short_job}", follow_redirects=False)
    assert job.headers["location"] == f"/dashboard/jobs/{receipt.job_ids[0]}"
    batch = client.get(f"/dashboard/lookup?id={str(receipt.batch_id)[:8]}", follow_redirects=False)
    assert batch.headers["location"] == f"/dashboard/batches/{receipt.batch_id}"
    assert client.get(f"/dashboard/jobs/{short_job}").status_code == 200
    prefix = uuid.uuid4().hex[:8]
    twins = [uuid.UUID(prefix + uuid.uuid4().hex[8:]) for _ in range(2)]
    _batch_with_ids(twins)
    ambiguous = client.get(f"/dashboard/lookup?id={prefix}")
    assert ambiguous.status_code == 422
    assert all(str(twin) in ambiguous.text for twin in twins)
    assert client.get("/dashboard/lookup?id=ffffffff-ffff-ffff").status_code == 404
