"""The pipeline's decisions against in-memory stand-ins: a scripted provider, a SQLite file,
a local folder store and an in-process HTTP transport for downloads."""

from __future__ import annotations

import io
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from models import FleetControl
from worker.blobs.storage import LocalStore, object_key
from worker.core import errors as e
from worker.core.settings import Settings
from worker.db.engine import make_engine
from worker.db.schema import upgrade
from worker.engine.pipeline import Next, Pipeline
from worker.provider.wire import Prediction, PredictionState
from worker.store import fleet
from worker.store import jobs as job_store

PID = "0123456789abcdef0123456789abcdef"


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 18), "navy").save(buffer, "PNG")
    return buffer.getvalue()


class ScriptedProvider:
    """Answers each call with the next scripted prediction or error."""

    def __init__(self) -> None:
        self.submits: list[object] = []
        self.results: list[object] = []
        self.calls: list[str] = []

    def _next(self, script: list[object]) -> Prediction:
        item = script.pop(0)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, Prediction)
        return item

    def submit(self, body: dict[str, object]) -> Prediction:
        self.calls.append("submit")
        return self._next(self.submits)

    def get_result(self, prediction_id: str) -> Prediction:
        self.calls.append("result")
        return self._next(self.results)


def prediction(
    state: PredictionState, outputs: list[str] | None = None, error: str | None = None
) -> Prediction:
    return Prediction(
        id=PID,
        state=state,
        raw_status=state.value,
        outputs=outputs or [],
        error=error,
        has_nsfw=[False],
        created_at=None,
        execution_time_ms=None,
        result_url=None,
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Pipeline, ScriptedProvider, sessionmaker[Session]]]:
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def sessions() -> Iterator[Session]:
        with factory.begin() as session:
            yield session

    image = png_bytes()
    downloads = httpx.Client(
        transport=httpx.MockTransport(
            lambda request: (
                httpx.Response(200, content=image, headers={"content-type": "image/png"})
                if "good" in request.url.path
                else httpx.Response(404)
            )
        )
    )
    settings = Settings(
        max_submit_attempts=3, retry_base_s=1, retry_max_s=4, ambiguous_submit="retry"
    )
    provider = ScriptedProvider()
    pipeline = Pipeline(
        settings=settings,
        sessions=sessions,
        provider=provider,
        store=LocalStore(tmp_path / "store"),
        http=downloads,
        rng=random.Random(7),
    )
    yield pipeline, provider, factory
    downloads.close()
    engine.dispose()


def new_job(factory: sessionmaker[Session]) -> uuid.UUID:
    from datetime import UTC, datetime, timedelta

    with factory.begin() as session:
        job = job_store.insert_job(
            session,
            fields={"prompt": "p", "aspect_ratio": "1:1", "resolution": "1080p"},
            priority="interactive",
            idempotency_key=None,
            deadline_at=datetime.now(UTC) + timedelta(hours=1),
        )
        return job.id


def job_row(factory: sessionmaker[Session], job_id: uuid.UUID):  # type: ignore[no-untyped-def]
    with factory() as session:
        return job_store.get_job(session, job_id)


def make_due(factory: sessionmaker[Session], job_id: uuid.UUID) -> None:
    from sqlalchemy import update

    from models import Job

    with factory.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(next_action_at=None))


def test_happy_path_moves_through_every_state(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    provider.results = [
        prediction(PredictionState.PENDING),
        prediction(PredictionState.COMPLETED, ["https://cdn.test/good/0.png"]),
    ]
    assert pipeline.submit(job_id) == Next("poll", pipeline.settings.poll_initial_delay_s)
    assert pipeline.poll(job_id).step == "poll"
    assert pipeline.poll(job_id) == Next("transfer")
    assert pipeline.transfer(job_id) is None
    job = job_row(factory, job_id)
    assert (job.status, job.poll_count, job.attempts) == ("succeeded", 2, 1)
    with factory() as session:
        (image,) = job_store.list_images(session, job_id)
    assert (image.width, image.height, image.bytes) == (32, 18, len(png_bytes()))


def test_ambiguous_submit_is_counted_then_retried(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [
        e.ProviderServerError("502 bad gateway", status_code=502),
        prediction(PredictionState.PENDING),
    ]
    assert pipeline.submit(job_id) is None  # queued again for the dispatcher, after a backoff
    job = job_row(factory, job_id)
    wait = (job.next_action_at - datetime.now(UTC)).total_seconds()
    assert job.status == "queued" and job.dispatched_at is None and 0.3 <= wait <= 1
    assert pipeline.submit(job_id) is None  # not due yet: a duplicate delivery does nothing
    assert provider.calls == ["submit"]
    make_due(factory, job_id)
    assert pipeline.submit(job_id).step == "poll"
    job = job_row(factory, job_id)
    assert (job.status, job.ambiguous_submits, job.attempts) == ("running", 1, 2)


def test_unsent_submits_exhaust_the_budget(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [e.ProviderUnreachable() for _ in range(3)]
    for _ in range(2):
        assert pipeline.submit(job_id) is None
        assert job_row(factory, job_id).status == "queued"
        make_due(factory, job_id)
    assert pipeline.submit(job_id) is None
    job = job_row(factory, job_id)
    assert (job.status, job.error_code, job.ambiguous_submits) == ("failed", "retries_exhausted", 0)


def test_fleet_wide_refusal_keeps_the_job_queued_without_spending_attempts(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [
        e.PermissionDenied("insufficient balance"),
        prediction(PredictionState.PENDING),
    ]
    assert pipeline.submit(job_id) is None
    job = job_row(factory, job_id)
    assert (job.status, job.attempts) == ("queued", 0)
    assert "insufficient balance" in job.error_message
    with factory.begin() as session:
        bucket = fleet.read_bucket(session)
    assert bucket.paused and bucket.pause_code == "balance"
    for _ in range(3):  # paused: no submission leaves, none is counted
        make_due(factory, job_id)
        assert pipeline.submit(job_id) is None
    assert provider.calls == ["submit"] and job_row(factory, job_id).attempts == 0
    with factory.begin() as session:
        assert fleet.clear_pause(session, by="test")
    assert pipeline.submit(job_id).step == "poll"
    assert job_row(factory, job_id).attempts == 1


def test_a_429_cools_the_fleet_down_without_spending_attempts(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [e.RateLimited(retry_after_s=30), prediction(PredictionState.PENDING)]
    assert pipeline.submit(job_id) is None
    job = job_row(factory, job_id)
    assert (job.status, job.attempts) == ("queued", 0)
    assert (job.next_action_at - datetime.now(UTC)).total_seconds() > 25  # after the cool-down
    with factory.begin() as session:
        bucket = fleet.read_bucket(session)
    assert bucket.cooldown_until is not None and bucket.strikes == 1
    assert bucket.rate_factor == 0.5
    make_due(factory, job_id)
    assert pipeline.submit(job_id) is None  # every submitter waits for the cool-down
    assert provider.calls == ["submit"]


def test_runs_of_server_errors_open_the_breaker_and_a_probe_closes_it(world) -> None:
    pipeline, provider, factory = world
    threshold = pipeline.limits.breaker_threshold
    jobs = [new_job(factory) for _ in range(threshold + 1)]
    provider.submits = [e.ProviderServerError("503", status_code=503) for _ in range(threshold)] + [
        prediction(PredictionState.PENDING)
    ]
    for job_id in jobs[:threshold]:
        assert pipeline.submit(job_id) is None
    with factory.begin() as session:
        bucket = fleet.read_bucket(session)
    assert bucket.breaker == "open" and bucket.breaker_failures == threshold
    assert pipeline.submit(jobs[-1]) is None  # open: refused without a call
    assert len(provider.calls) == threshold
    with factory.begin() as session:  # the breaker's wait is over
        session.execute(
            update(FleetControl).values(breaker_opened_at=datetime.now(UTC) - timedelta(hours=1))
        )
    assert pipeline.submit(jobs[-1]).step == "poll"  # the probe goes and succeeds
    with factory.begin() as session:
        bucket = fleet.read_bucket(session)
    assert bucket.breaker == "closed" and bucket.breaker_failures == 0


def test_completed_without_outputs_is_no_output(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    provider.results = [prediction(PredictionState.COMPLETED, [])]
    pipeline.submit(job_id)
    assert pipeline.poll(job_id) is None
    assert job_row(factory, job_id).error_code == "no_output"


def test_expired_output_fails_without_an_image_row(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    provider.results = [prediction(PredictionState.COMPLETED, ["https://cdn.test/gone/0.png"])]
    pipeline.submit(job_id)
    pipeline.poll(job_id)
    assert pipeline.transfer(job_id) is None
    job = job_row(factory, job_id)
    assert (job.status, job.error_code) == ("failed", "output_unavailable")
    with factory() as session:
        assert job_store.list_images(session, job_id) == []


def test_a_lost_discard_is_sent_again_until_the_outputs_are_gone(world, recorded) -> None:
    from worker.engine.reconciler import Reconciler

    # Given a job that stored its first output, then failed on its second
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    outputs = ["https://cdn.test/good/0.png", "https://cdn.test/gone/1.png"]
    provider.results = [prediction(PredictionState.COMPLETED, outputs)]
    pipeline.submit(job_id)
    pipeline.poll(job_id)
    assert pipeline.transfer(job_id) is None
    job = job_row(factory, job_id)
    assert (job.status, job.error_code) == ("failed", "output_unavailable")
    stored = pipeline.store.path(object_key(pipeline.store.prefix, job_id, job.created_at, 0))
    assert stored.exists()
    # When its discard message is lost (a broker outage), a reconciler pass later sends it again
    assert ("discard", job_id) in [(step, sent) for step, sent, _ in recorded.steps]
    sent: list[tuple[str, uuid.UUID]] = []
    later = datetime.now(UTC) + timedelta(minutes=10)
    reconciler = Reconciler(
        settings=pipeline.settings,
        sessions=pipeline.sessions,
        send=lambda step, sent_id: sent.append((step, sent_id)),
        clock=lambda: later,
    )
    assert reconciler.run_once().discards == 1 and sent == [("discard", job_id)]
    # Then running it deletes the object and the rows, and no pass sends it any more
    pipeline.discard(job_id)
    assert not stored.exists()
    with factory() as session:
        assert job_store.list_images(session, job_id) == []
    assert reconciler.run_once().discards == 0


def test_past_deadline_a_pending_prediction_ends_the_job(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    provider.results = [prediction(PredictionState.PENDING)]
    pipeline.submit(job_id)
    pipeline.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
    assert pipeline.poll(job_id) is None
    assert job_row(factory, job_id).error_code == "deadline_exceeded"
    assert provider.calls == ["submit", "result"]


def test_past_deadline_a_finished_prediction_is_still_stored(world) -> None:
    # Given a job whose deadline passed while its (paid) prediction finished unseen
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    provider.results = [prediction(PredictionState.COMPLETED, ["https://cdn.test/good/0.png"])]
    pipeline.submit(job_id)
    pipeline.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
    # When it is polled once more, then copied: it succeeds
    assert pipeline.poll(job_id) == Next("transfer")
    assert pipeline.transfer(job_id) is None
    assert job_row(factory, job_id).status == "succeeded"


def test_past_deadline_an_unanswered_poll_waits_only_through_an_outage(world) -> None:
    pipeline, provider, factory = world
    outage, broken = new_job(factory), new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING), prediction(PredictionState.PENDING)]
    pipeline.submit(outage)
    pipeline.submit(broken)
    pipeline.clock = lambda: datetime.now(UTC) + timedelta(hours=2)
    provider.results = [e.ProviderServerError("503", status_code=503), e.ProviderProtocolError()]
    # a provider that is down may be hiding a finished prediction: asked again later
    assert pipeline.poll(outage).step == "poll"
    # an answer that cannot be understood past the deadline ends the job
    assert pipeline.poll(broken) is None
    assert job_row(factory, broken).error_code == "deadline_exceeded"
    # and past the output URL's lifetime the outage ends it too
    ttl = pipeline.settings.output_url_ttl_s
    pipeline.clock = lambda: datetime.now(UTC) + timedelta(hours=2, seconds=ttl)
    provider.results = [e.ProviderServerError("503", status_code=503)]
    assert pipeline.poll(outage) is None
    assert job_row(factory, outage).error_code == "deadline_exceeded"


def test_generated_outputs_are_stored_past_the_deadline(world) -> None:
    # Given a job whose prediction completed (paid for) just before its deadline passed
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    provider.results = [prediction(PredictionState.COMPLETED, ["https://cdn.test/good/0.png"])]
    pipeline.submit(job_id)
    assert pipeline.poll(job_id) == Next("transfer")
    _set(factory, job_id, deadline_at=datetime.now(UTC) - timedelta(minutes=5))
    # When the reconciler passes and the copy runs after the deadline
    from worker.engine.reconciler import Reconciler

    reconciler = Reconciler(
        settings=pipeline.settings, sessions=pipeline.sessions, send=lambda *_: None
    )
    assert reconciler.run_once().deadlines == 0
    assert pipeline.transfer(job_id) is None
    # Then the output is stored and the job succeeds: the deadline ends waiting, not a paid image
    job = job_row(factory, job_id)
    assert (job.status, job.error_code) == ("succeeded", None)


def test_a_provider_outage_while_polling_never_fails_the_paid_prediction(world) -> None:
    # Given a submitted job, and a provider that answers its polls 503 far past the budget
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    pipeline.submit(job_id)
    outage = pipeline.settings.max_poll_errors + 5
    provider.results = [e.ProviderServerError("503", status_code=503) for _ in range(outage)]
    provider.results.append(prediction(PredictionState.COMPLETED, ["https://cdn.test/good/0.png"]))
    # When it is polled through the outage
    for _ in range(outage):
        assert pipeline.poll(job_id).step == "poll"
        make_due(factory, job_id)
    # Then the budget was not spent, and the first answer after the outage moves it on
    assert job_row(factory, job_id).poll_errors == 0
    assert pipeline.poll(job_id) == Next("transfer")


def _set(factory: sessionmaker[Session], job_id: uuid.UUID, **values: object) -> None:
    from sqlalchemy import update

    from models import Job

    with factory.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def test_a_job_whose_submit_keeps_killing_workers_ends_exhausted(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    _set(factory, job_id, attempts=pipeline.settings.max_submit_attempts)  # earlier crashes
    assert pipeline.submit(job_id) is None
    job = job_row(factory, job_id)
    assert (job.status, job.error_code) == ("failed", "retries_exhausted")
    assert provider.calls == []


def test_redelivered_polls_count_until_the_budget_is_spent(world) -> None:
    pipeline, provider, factory = world
    job_id = new_job(factory)
    provider.submits = [prediction(PredictionState.PENDING)]
    pipeline.submit(job_id)
    _set(factory, job_id, poll_errors=pipeline.settings.max_poll_errors - 1)
    assert pipeline.redelivered_poll(job_id) is True
    assert pipeline.redelivered_poll(job_id) is False
    assert job_row(factory, job_id).error_code == "retries_exhausted"


def test_reconciler_redrives_expires_and_fails_overdue_jobs(world) -> None:
    from datetime import UTC, datetime, timedelta

    from worker.engine.dispatcher import Dispatcher
    from worker.engine.reconciler import Reconciler

    pipeline, provider, factory = world
    lost_message, dead_submitter, too_late = (new_job(factory) for _ in range(3))
    past = datetime.now(UTC) - timedelta(minutes=5)
    _set(factory, lost_message, updated_at=past, next_action_at=past, dispatched_at=past)
    provider.submits = [prediction(PredictionState.PENDING)]
    pipeline.submit(dead_submitter)
    _set(
        factory,
        dead_submitter,
        status="submitting",
        lease_expires_at=past,
        updated_at=past,
        prediction_id=None,
    )
    _set(factory, too_late, deadline_at=past)
    sent: list[tuple[str, uuid.UUID]] = []

    @contextmanager
    def sessions() -> Iterator[Session]:
        with factory.begin() as session:
            yield session

    reconciler = Reconciler(
        settings=pipeline.settings,
        sessions=sessions,
        send=lambda step, job_id: sent.append((step, job_id)),
    )
    result = reconciler.run_once()
    assert (result.deadlines, result.leases_expired) == (1, 1)
    assert job_row(factory, too_late).error_code == "deadline_exceeded"
    expired = job_row(factory, dead_submitter)
    assert (expired.status, expired.ambiguous_submits) == ("queued", 1)
    assert sent == []  # queued jobs are the dispatcher's
    dispatched: list[uuid.UUID] = []
    dispatcher = Dispatcher(
        settings=pipeline.settings,
        sessions=sessions,
        send=lambda job_id, countdown: dispatched.append(job_id),
    )
    assert dispatcher.run_once().sent == 2
    assert set(dispatched) == {lost_message, dead_submitter}  # its message was lost long ago
    assert dispatcher.run_once().sent == 0  # just sent: not again until it counts as lost


@pytest.mark.parametrize(
    "resolution, fastest, slowest", [("1080p", 15, 60), ("2K", 20, 80), ("4K", 30, 120)]
)
def test_the_poll_schedule_sees_every_prediction_soon_after_it_is_done(
    resolution: str, fastest: float, slowest: float
) -> None:
    from worker.engine.pipeline import first_poll_delay, next_poll_delay

    # Given the contract's spread of generation times, and the default poll settings
    settings, rng = Settings(), random.Random(5)
    lags, polls = [], []
    for step in range(200):
        generation = fastest + (slowest - fastest) * step / 199
        # When a prediction is polled on the schedule until it is seen done
        at, count = first_poll_delay(settings, resolution), 1
        while at < generation:
            at += next_poll_delay(settings, at, rng)
            count += 1
        lags.append((at - generation) / (2 + 0.1 * generation))
        polls.append(count)
    # Then each is seen within 2 s + 10% of its generation time, with few polls
    assert max(lags) <= 1.0
    assert sorted(polls)[len(polls) // 2] <= 9 and max(polls) <= 13
    assert first_poll_delay(settings, resolution) == fastest
