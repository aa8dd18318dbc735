"""Batches and the outbox against real Postgres (and the embedded SQLite): the bulk insert,
transactional enqueue, idempotency, and a batch completed exactly once however its last jobs
end."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from models import Batch, Job, WebhookDelivery
from tests.producers import configure, row_counts
from tests.stand_ins import RecordingPorts
from worker.core.errors import IdempotencyConflict
from worker.core.states import JobStatus
from worker.db.engine import get_engine, session_scope
from worker.service import batches, jobs
from worker.store import outbox, transitions

pytestmark = pytest.mark.integration


@pytest.fixture
def producer(configured, monkeypatch: pytest.MonkeyPatch) -> list[list[uuid.UUID]]:
    """Producer settings; the nudges sent to the broker are recorded (and still sent)."""
    configure(monkeypatch)
    sent: list[list[uuid.UUID]] = []
    real = batches.nudge

    def recording(job_ids: list[uuid.UUID]) -> int:
        sent.append(list(job_ids))
        return real(job_ids)

    monkeypatch.setattr(batches, "nudge", recording)
    return sent


def items(count: int, prefix: str = "p") -> list[dict[str, object]]:
    return [
        {"prompt": f"{prefix} {n}", "ref": f"{prefix}-{n}", "seed": n + 1} for n in range(count)
    ]


def test_enqueue_batch_writes_every_job_in_order(producer: list[list[uuid.UUID]]) -> None:
    receipt = batches.enqueue_batch(items(250), name="nightly", deadline_s=900)
    with session_scope() as session:
        rows = session.scalars(
            select(Job).where(Job.batch_id == receipt.batch_id).order_by(Job.batch_index)
        ).all()
        batch = session.get(Batch, receipt.batch_id)
    assert [row.id for row in rows] == receipt.job_ids
    assert [row.ref for row in rows[:2]] == ["p-0", "p-1"]
    assert {(row.status, row.priority) for row in rows} == {("queued", "batch")}
    assert all(abs((row.deadline_at - row.created_at).total_seconds() - 900) < 1 for row in rows)
    assert batch is not None and (batch.total, batch.name) == (250, "nightly")
    assert producer == [receipt.job_ids]  # nudged once, after the commit


NASTY = [
    "tab\there",
    "new\nline\r\nwindows",
    "back\\slash \\N \\.",
    "\\.",
    "\\N",
    "ünïcödé ✓ 🦊",
    "quote ' \" ; DROP TABLE jobs; --",
    "  leading and trailing  ",
]


def test_bulk_insert_stores_every_character_as_given(producer: list[list[uuid.UUID]]) -> None:
    given = [{"prompt": text, "ref": f"{n}:{text}", "seed": n + 1} for n, text in enumerate(NASTY)]
    given.append(
        {
            "prompt": "with images",
            "images": ["https://example.com/a\\b.png", "data:image/png;base64,iVBORw0K"],
        }
    )
    receipt = batches.enqueue_batch(given)
    with session_scope() as session:
        rows = session.scalars(
            select(Job).where(Job.batch_id == receipt.batch_id).order_by(Job.batch_index)
        ).all()
        stored = [(row.prompt, row.ref, row.seed, row.images) for row in rows]
    assert stored == [(g["prompt"], g.get("ref"), g.get("seed"), g.get("images")) for g in given]


def test_transactional_enqueue_exists_only_if_the_caller_commits(
    producer: list[list[uuid.UUID]],
) -> None:
    before = row_counts()
    with Session(get_engine()) as session:
        session.begin()
        receipt = batches.enqueue_batch(items(5), session=session)
        jobs.enqueue({"prompt": "single"}, session=session)
        session.rollback()
    assert row_counts() == before and producer == []
    with Session(get_engine()) as session, session.begin():
        receipt = batches.enqueue_batch(items(5), session=session)
        assert producer == []  # not before the commit
    assert producer == [receipt.job_ids]
    assert batches.batch_status(receipt.batch_id)["counts"]["queued"] == 5


def test_batch_idempotency_key(producer: list[list[uuid.UUID]]) -> None:
    first = batches.enqueue_batch(items(3), idempotency_key="night-1")
    again = batches.enqueue_batch(items(3), idempotency_key="night-1")
    assert (first.created, again.created) == (True, False)
    assert (again.batch_id, again.job_ids) == (first.batch_id, first.job_ids)
    before = row_counts()
    with pytest.raises(IdempotencyConflict):
        batches.enqueue_batch(items(4), idempotency_key="night-1")
    with pytest.raises(IdempotencyConflict):
        batches.enqueue_batch(items(3), idempotency_key="night-1", name="other")
    assert row_counts() == before and len(producer) == 1


def test_a_batch_wakes_the_dispatcher_once_and_sends_no_job_message(
    producer: list[list[uuid.UUID]], recorded: RecordingPorts
) -> None:
    batches.enqueue_batch(items(25))
    woken, sent = recorded.wakes, recorded.steps
    assert woken == [True] and sent == []  # the jobs wait in the table for the dispatcher


def _deliveries(**where: object) -> list[WebhookDelivery]:
    with session_scope() as session:
        query = select(WebhookDelivery).filter_by(**where).order_by(WebhookDelivery.created_at)
        return list(session.scalars(query))


@pytest.mark.parametrize("round_", range(4))
def test_concurrent_last_jobs_complete_the_batch_exactly_once(
    producer: list[list[uuid.UUID]], round_: int
) -> None:
    # Given a batch of 8 jobs with a callback URL
    receipt = batches.enqueue_batch(
        items(8, f"r{round_}"), callback_url="https://hooks.example.com/b"
    )
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def end(job_id: uuid.UUID) -> None:
        try:
            barrier.wait(10)
            jobs.cancel(job_id, reason="race")
        except BaseException as exc:  # reported below
            errors.append(exc)

    # When all of them end at the same moment, each in its own transaction
    threads = [threading.Thread(target=end, args=(job_id,)) for job_id in receipt.job_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # Then the batch is completed, with one completion event
    assert errors == []
    view = batches.batch_status(receipt.batch_id)
    assert view["completed"] and view["counts"]["cancelled"] == 8
    events = _deliveries(batch_id=receipt.batch_id)
    assert [(e.event, e.url) for e in events] == [
        ("batch.completed", "https://hooks.example.com/b")
    ]


def test_a_job_with_a_callback_records_its_event_only_if_its_end_commits(
    producer: list[list[uuid.UUID]],
) -> None:
    job_id = jobs.enqueue({"prompt": "x"}, callback_url="https://hooks.example.com/j")
    with Session(get_engine()) as session:
        session.begin()
        assert transitions.cancel(session, job_id=job_id, reason="changed my mind") is not None
        session.rollback()
    assert _deliveries(job_id=job_id) == []
    jobs.cancel(job_id)
    jobs.cancel(job_id)  # already ended: no second event
    assert [e.event for e in _deliveries(job_id=job_id)] == ["job.cancelled"]


def test_a_retried_job_and_its_batch_report_their_new_ending_too(
    producer: list[list[uuid.UUID]],
) -> None:
    from worker.service import operator as admin

    # Given a one-job batch whose job failed, with callbacks on the job and the batch
    receipt = batches.enqueue_batch([{"prompt": "x"}], callback_url="https://hooks.example.com/b")
    (job_id,) = receipt.job_ids
    with session_scope() as session:
        session.execute(
            update(Job).where(Job.id == job_id).values(callback_url="https://hooks.example.com/j")
        )
        transitions.fail(
            session,
            job_id=job_id,
            sources=[JobStatus.QUEUED],
            code="provider_failed",
            message="boom",
        )
    # When an operator retries it and it ends again
    admin.retry_job(job_id)
    assert not batches.batch_status(receipt.batch_id)["completed"]  # open again
    jobs.cancel(job_id)
    # Then each ending was reported, and the batch's second completion too
    assert [e.event for e in _deliveries(job_id=job_id)] == ["job.failed", "job.cancelled"]
    assert [e.event for e in _deliveries(batch_id=receipt.batch_id)] == ["batch.completed"] * 2


def test_the_sweep_completes_a_batch_a_crash_left_open(producer: list[list[uuid.UUID]]) -> None:
    # Given a batch whose jobs ended without the completion check (a crash after the commit)
    receipt = batches.enqueue_batch(items(3), callback_url="https://hooks.example.com/b")
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.batch_id == receipt.batch_id)
            .values(status=JobStatus.FAILED.value)
        )
    assert not batches.batch_status(receipt.batch_id)["completed"]
    # When the sweep runs (twice)
    first = outbox.sweep(get_engine(), stale_s=60)
    second = outbox.sweep(get_engine(), stale_s=60)
    # Then the batch is completed once, with one event
    assert (first.batches_completed, second.batches_completed) == (1, 0)
    assert batches.batch_status(receipt.batch_id)["completed"]
    assert len(_deliveries(batch_id=receipt.batch_id)) == 1


def test_the_sweep_resends_deliveries_whose_message_was_lost(
    producer: list[list[uuid.UUID]],
) -> None:
    job_id = jobs.enqueue({"prompt": "x"}, callback_url="https://hooks.example.com/j")
    jobs.cancel(job_id)
    with session_scope() as session:  # as if its message was lost a while ago
        session.execute(
            text(
                "UPDATE webhook_deliveries SET next_attempt_at = now() - "
                "interval '10 minutes', updated_at = now() - interval '10 minutes'"
            )
        )
    assert outbox.sweep(get_engine(), stale_s=60).deliveries_resent == 1
    assert outbox.sweep(get_engine(), stale_s=60).deliveries_resent == 0  # touched


def test_embedded_sqlite_batches(
    configured, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from worker.db.engine import reset_engine
    from worker.db.schema import upgrade

    configure(
        monkeypatch,
        IMAGEGEN_DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.db'}",
        IMAGEGEN_BROKER_URL="memory://",
    )
    reset_engine()
    upgrade()
    with_image = {"prompt": "with image", "images": ["https://example.com/a.png"]}
    receipt = batches.enqueue_batch(
        [*items(30), with_image], callback_url="https://hooks.example.com/b"
    )
    lines = list(batches.manifest(receipt.batch_id))
    assert [line["job_id"] for line in lines] == [str(j) for j in receipt.job_ids]
    assert jobs.status(receipt.job_ids[-1])["request"]["images"] == ["https://example.com/a.png"]
    for job_id in receipt.job_ids:
        jobs.cancel(job_id)
    assert batches.batch_status(receipt.batch_id)["completed"]
    assert len(_deliveries(batch_id=receipt.batch_id)) == 1
