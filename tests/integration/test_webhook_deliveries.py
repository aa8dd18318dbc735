"""Webhook deliveries you can see and replay: `GET /v1/webhooks/deliveries`, `POST
/v1/webhooks/deliveries/{id}/redeliver`, `imagegen webhooks list|redeliver`, against a real
receiver, real Postgres and the real API over HTTP (the workers' part, one attempt, is made
by hand with the real sender)."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_admin import run
from tests.integration.test_webhook_sender import ended_job, state
from tests.producers import AUTH, WebhookReceiver, configure
from tests.stand_ins import RecordingPorts
from worker.core.settings import get_settings
from worker.db.engine import session_scope
from worker.engine.webhook_sender import WebhookSender

pytestmark = pytest.mark.integration


@pytest.fixture
def api(
    configured, monkeypatch: pytest.MonkeyPatch, api_url: str, recorded: RecordingPorts
) -> Iterator[httpx.Client]:
    configure(monkeypatch)
    with httpx.Client(base_url=api_url, headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture
def sender(api: httpx.Client) -> Iterator[WebhookSender]:
    sender = WebhookSender(
        settings=get_settings(), sessions=session_scope, store=None, rng=random.Random(3)
    )
    yield sender
    sender.close()


def failed_delivery(sender: WebhookSender) -> tuple[uuid.UUID, uuid.UUID]:
    with WebhookReceiver(replies=[410]) as receiver:
        job_id, delivery_id = ended_job(receiver.url)
        assert sender.deliver(delivery_id) is None
    assert state(delivery_id)[0].status == "failed"
    return job_id, delivery_id


def test_failed_deliveries_are_listed_with_attempts_and_redelivered_with_the_same_event_id(
    api: httpx.Client, sender: WebhookSender, recorded: RecordingPorts
) -> None:
    # Given a delivery that failed (the receiver answered 410)
    job_id, delivery_id = failed_delivery(sender)
    # When an operator lists the failed deliveries of the job
    page = api.get(
        "/v1/webhooks/deliveries", params={"status": "failed", "job_id": str(job_id)[:8]}
    )
    assert page.status_code == 200, page.text
    [item] = page.json()["items"]
    # Then it is there with its attempt
    assert (item["id"], item["status"], item["event"]) == (
        str(delivery_id),
        "failed",
        "job.cancelled",
    )
    assert [a["status_code"] for a in item["attempts"]] == [410]
    assert item["attempt_count"] == 1 and item["last_error"] == "answered HTTP 410"
    # When it is redelivered
    reply = api.post(f"/v1/webhooks/deliveries/{delivery_id}/redeliver")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "pending"
    assert recorded.webhooks[-1] == delivery_id  # handed to the workers
    # Then the next attempt is made with the same event id, and recorded
    with WebhookReceiver(replies=[200]) as receiver:
        with session_scope() as session:
            from models import WebhookDelivery

            session.get(WebhookDelivery, delivery_id).url = receiver.url  # type: ignore[union-attr]
        assert sender.deliver(delivery_id) is None
        [received] = receiver.take(1, timeout_s=5)
    assert received.headers["X-Imagegen-Delivery"] == str(delivery_id)
    assert json.loads(received.body)["id"] == str(delivery_id)
    after = api.get("/v1/webhooks/deliveries", params={"job_id": str(job_id)}).json()["items"][0]
    assert after["status"] == "delivered"
    assert [a["status_code"] for a in after["attempts"]] == [410, 200]
    assert (
        api.get(
            "/v1/webhooks/deliveries", params={"status": "failed", "job_id": str(job_id)}
        ).json()["items"]
        == []
    )


def test_unknown_and_bad_delivery_requests(api: httpx.Client) -> None:
    assert api.post(f"/v1/webhooks/deliveries/{uuid.uuid4()}/redeliver").status_code == 404
    reply = api.get("/v1/webhooks/deliveries", params={"status": "lost"})
    assert reply.status_code == 422 and reply.json()["errors"][0]["field"] == "status"


def test_cli_lists_and_redelivers_failed(
    api: httpx.Client, sender: WebhookSender, recorded: RecordingPorts, service_env
) -> None:
    failed = [failed_delivery(sender)[1] for _ in range(2)]
    listed = run(service_env, "webhooks", "list", "--status", "failed", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = {item["id"] for item in json.loads(listed.stdout)["items"]}
    assert {str(delivery_id) for delivery_id in failed} <= ids
    text = run(service_env, "webhooks", "list", "--status", "failed")
    assert text.returncode == 0 and "410" in text.stdout
    one = run(service_env, "webhooks", "redeliver", str(failed[0]))
    assert one.returncode == 0, one.stderr
    assert state(failed[0])[0].status == "pending"
    rest = run(service_env, "webhooks", "redeliver", "--failed", "--json")
    assert rest.returncode == 0, rest.stderr
    assert str(failed[1]) in json.loads(rest.stdout)["redelivered"]
    assert state(failed[1])[0].status == "pending"
    assert set(failed) <= set(recorded.webhooks)
    assert run(service_env, "webhooks", "redeliver").returncode == 2


def test_webhook_events_carry_the_metadata(api: httpx.Client, sender: WebhookSender) -> None:
    from sqlalchemy import select

    from models import WebhookDelivery
    from worker.service import batches, jobs

    with WebhookReceiver(replies=[200, 200]) as receiver:
        job_id = jobs.enqueue(
            {"prompt": "a cat"}, callback_url=receiver.url, metadata={"order": "o-1"}
        )
        jobs.cancel(job_id)
        receipt = batches.enqueue_batch(
            [{"prompt": "x", "metadata": {"sku": "s"}}],
            callback_url=receiver.url,
            metadata={"run": "n"},
            dispatch=False,
        )
        jobs.cancel(receipt.job_ids[0])
        with session_scope() as session:
            ids = list(
                session.scalars(
                    select(WebhookDelivery.id).where(
                        (WebhookDelivery.job_id == job_id)
                        | (WebhookDelivery.batch_id == receipt.batch_id)
                    )
                )
            )
        for delivery_id in ids:
            assert sender.deliver(delivery_id) is None
        events = {e.event()["type"]: e.event()["data"] for e in receiver.take(2, timeout_s=5)}
    assert events["job.cancelled"]["job"]["metadata"] == {"order": "o-1"}
    assert events["batch.completed"]["batch"]["metadata"] == {"run": "n"}
