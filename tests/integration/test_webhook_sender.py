"""Webhook deliveries against a real HTTP receiver and real Postgres: signed, retried with
backoff, every attempt recorded, refused addresses never contacted."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select, update

from models import WebhookAttempt, WebhookDelivery
from tests.producers import WEBHOOK_SECRET, WebhookReceiver, configure, readme_verifier
from tests.stand_ins import RecordingPorts
from worker.core.settings import get_settings
from worker.db.engine import session_scope
from worker.engine.webhook_sender import WebhookSender
from worker.service import jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def producer(configured, monkeypatch: pytest.MonkeyPatch, recorded: RecordingPorts) -> None:
    configure(monkeypatch)  # deliveries are recorded, not sent: this test sends by hand


@pytest.fixture
def sender(producer: None) -> Iterator[WebhookSender]:
    sender = WebhookSender(
        settings=get_settings(), sessions=session_scope, store=None, rng=random.Random(7)
    )
    yield sender
    sender.close()


def ended_job(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A job with a callback URL, cancelled: (job id, its pending delivery id)."""
    job_id = jobs.enqueue({"prompt": "a cat", "seed": 5}, callback_url=url, ref="ref-9")
    jobs.cancel(job_id, reason="test")
    with session_scope() as session:
        delivery = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        ).one()
        return job_id, delivery.id


def state(delivery_id: uuid.UUID) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    with session_scope() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery is not None
        attempts = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.id)
        ).all()
        return delivery, list(attempts)


def test_a_delivery_is_signed_and_recorded(sender: WebhookSender) -> None:
    with WebhookReceiver() as receiver:
        job_id, delivery_id = ended_job(f"{receiver.url}/hooks/job")
        assert sender.deliver(delivery_id) is None  # delivered: nothing more to do
        [request] = receiver.take(1, timeout_s=5)
    assert request.path == "/hooks/job"
    assert readme_verifier()(WEBHOOK_SECRET, request.headers, request.body)
    assert not readme_verifier()("another-secret", request.headers, request.body)
    event = request.event()
    assert (event["id"], event["type"]) == (str(delivery_id), "job.cancelled")
    assert request.headers["X-Imagegen-Event"] == "job.cancelled"
    assert request.headers["X-Imagegen-Delivery"] == str(delivery_id)
    job = event["data"]["job"]
    assert (job["id"], job["status"], job["ref"]) == (str(job_id), "cancelled", "ref-9")
    delivery, attempts = state(delivery_id)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert [(a.attempt, a.status_code, a.event) for a in attempts] == [(1, 200, "job.cancelled")]
    assert WEBHOOK_SECRET not in json.dumps([a.error for a in attempts])
    assert sender.deliver(delivery_id) is None  # a duplicate message posts nothing
    assert receiver.received.empty()


def test_failures_are_retried_with_backoff_then_delivered(sender: WebhookSender) -> None:
    with WebhookReceiver(replies=[500, 503]) as receiver:
        _, delivery_id = ended_job(receiver.url)
        first = sender.deliver(delivery_id)
        assert first is not None and 0.1 <= first <= 0.3  # base 0.2 s, +-20 % jitter
        assert sender.deliver(delivery_id) is None  # not due yet: nothing sent
        time.sleep(first)
        second = sender.deliver(delivery_id)
        assert second is not None and 0.3 <= second <= 0.5  # doubled
        time.sleep(second)
        assert sender.deliver(delivery_id) is None
        requests = receiver.take(3, timeout_s=5)
    assert len({r.headers["X-Imagegen-Delivery"] for r in requests}) == 1  # same event id
    delivery, attempts = state(delivery_id)
    assert delivery.status == "delivered"
    assert [a.status_code for a in attempts] == [500, 503, 200]
    assert attempts[0].error == "answered HTTP 500"


def test_gone_stops_at_once(sender: WebhookSender) -> None:
    with WebhookReceiver(replies=[410]) as receiver:
        _, delivery_id = ended_job(receiver.url)
        assert sender.deliver(delivery_id) is None
    delivery, attempts = state(delivery_id)
    assert (delivery.status, [a.status_code for a in attempts]) == ("failed", [410])


def test_gives_up_after_the_window(producer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, IMAGEGEN_WEBHOOK_GIVE_UP_AFTER_S="0.001")
    with WebhookReceiver(replies=[500]) as receiver:
        _, delivery_id = ended_job(receiver.url)
        time.sleep(0.01)
        sender = WebhookSender(settings=get_settings(), sessions=session_scope, store=None)
        assert sender.deliver(delivery_id) is None
    assert state(delivery_id)[0].status == "failed"


def test_unreachable_target_is_recorded_and_retried(sender: WebhookSender) -> None:
    _, delivery_id = ended_job("http://127.0.0.1:9/hook")  # nothing listens on port 9
    assert sender.deliver(delivery_id) is not None
    delivery, attempts = state(delivery_id)
    assert delivery.status == "pending" and attempts[0].status_code is None
    assert "ConnectError" in (attempts[0].error or "")


def test_private_addresses_are_refused_at_send_time(
    producer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WebhookReceiver() as receiver:
        _, delivery_id = ended_job(receiver.url)  # accepted while private URLs were allowed
        configure(monkeypatch, IMAGEGEN_ALLOW_PRIVATE_URLS="false")
        sender = WebhookSender(settings=get_settings(), sessions=session_scope, store=None)
        assert sender.deliver(delivery_id) is None
        assert receiver.received.empty()  # never contacted
    delivery, attempts = state(delivery_id)
    assert delivery.status == "failed" and "private" in (attempts[0].error or "")


def test_a_public_name_resolving_to_a_private_address_is_refused(
    producer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, delivery_id = ended_job("https://hooks.example.com/x")
    configure(monkeypatch, IMAGEGEN_ALLOW_PRIVATE_URLS="false")
    sender = WebhookSender(
        settings=get_settings(),
        sessions=session_scope,
        store=None,
        resolver=lambda host, port: ["10.0.0.7"],
    )
    assert sender.deliver(delivery_id) is None
    assert "resolves to a private" in (state(delivery_id)[1][0].error or "")


def test_no_secret_no_send(producer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.core.settings import reset_settings

    monkeypatch.delenv("IMAGEGEN_WEBHOOK_SECRET")
    reset_settings()
    with WebhookReceiver() as receiver:
        _, delivery_id = ended_job(receiver.url)
        sender = WebhookSender(settings=get_settings(), sessions=session_scope, store=None)
        assert sender.deliver(delivery_id) is not None  # waits for the secret
        assert receiver.received.empty()
    delivery, attempts = state(delivery_id)
    assert delivery.status == "pending"
    assert "IMAGEGEN_WEBHOOK_SECRET is not set" in (attempts[0].error or "")


def test_the_connection_goes_to_the_address_that_was_checked(
    producer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a name whose DNS answer changes after the first look-up (rebinding): 127.0.0.1
    # first, where the receiver listens, another address on every later look-up
    looked_up: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"] if len(looked_up) == 1 else ["127.0.0.2"]

    with WebhookReceiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        _, delivery_id = ended_job(f"http://hook.test:{port}/events")
        sender = WebhookSender(
            settings=get_settings(), sessions=session_scope, store=None, resolver=rebinding
        )

        # When the event is sent
        assert sender.deliver(delivery_id) is None
        (request,) = receiver.take(1, timeout_s=5)

    # Then the host was looked up once, the connection went to that checked address, and the
    # request still names the URL's host
    assert looked_up == ["hook.test"]
    assert request.headers["Host"] == f"hook.test:{port}" and request.path == "/events"
    assert state(delivery_id)[0].status == "delivered"


@pytest.mark.parametrize("url", ["https://xn--/h", f"https://{'a' * 64}.example.com/h"])
def test_a_stored_target_the_resolver_cannot_take_still_ends(
    sender: WebhookSender, url: str
) -> None:
    # Given a delivery stored before such host names were refused at enqueue
    _, delivery_id = ended_job("https://hooks.example.com/x")
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(url=url)
        )

    # When it is sent
    assert sender.deliver(delivery_id) is None

    # Then the attempt is recorded and the delivery has reached its end
    delivery, attempts = state(delivery_id)
    assert delivery.status == "failed" and len(attempts) == 1
    assert "valid host name" in (attempts[0].error or "")


def test_an_unexpected_error_is_an_attempt_not_a_crash(
    producer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a look-up that fails in a way nobody planned for
    def broken(host: str, port: int) -> list[str]:
        raise RuntimeError("resolver exploded")

    _, delivery_id = ended_job("https://hooks.example.com/x")
    sender = WebhookSender(
        settings=get_settings(), sessions=session_scope, store=None, resolver=broken
    )

    # When it is sent, the attempt is recorded and tried again later
    assert sender.deliver(delivery_id) is not None
    delivery, attempts = state(delivery_id)
    assert delivery.status == "pending" and "resolver exploded" in (attempts[0].error or "")
