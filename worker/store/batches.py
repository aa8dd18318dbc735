"""The SQL of batches: the bulk insert of their jobs, counts, the manifest, completion.

Beside ``store.jobs`` (the SQL of single jobs) so each stays one noun.
A batch's jobs go in with one ``COPY`` per table on Postgres (tens of thousands of rows per
second) or chunked multi-row inserts elsewhere, never one round trip per job.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Table, exists, func, insert, select, update
from sqlalchemy.orm import Session

from models import Batch, Job, JobImage
from worker.core.gcpause import cyclic_gc_paused
from worker.core.states import ACTIVE, JobStatus

#: Columns written for each batch job, in the order of ``_copy_line`` (the rest stay NULL).
JOB_COLUMNS = (
    "id",
    "status",
    "priority",
    "prompt",
    "images",
    "aspect_ratio",
    "resolution",
    "seed",
    "batch_id",
    "batch_index",
    "ref",
    "metadata",
    "attempts",
    "poll_count",
    "poll_errors",
    "transfer_attempts",
    "ambiguous_submits",
    "next_action_at",
    "deadline_at",
    "created_at",
    "updated_at",
    "tenant",
    "key_id",
)
_CHUNK = 5_000
#: COPY's text format: backslash, newline, carriage return and tab are escaped; NULL is \N.
_SPECIAL = re.compile(r"[\\\n\r\t]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


class NewJob(NamedTuple):
    """One job of a batch as written: its id, position and validated request fields."""

    id: uuid.UUID
    position: int
    prompt: str
    images: list[str] | None
    aspect_ratio: str
    resolution: str
    seed: int | None
    ref: str | None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Counts:
    """A batch's jobs by status, and how many finished since a given moment."""

    by_status: dict[str, int]
    finished_recently: int


# --- writes -------------------------------------------------------------------------------------


def insert_batch(session: Session, *, batch: Batch) -> None:
    session.add(batch)
    session.flush()


def insert_jobs(
    session: Session,
    *,
    batch_id: uuid.UUID,
    priority: str,
    now: datetime,
    deadline: datetime,
    jobs: Iterable[NewJob],
    tenant: str = "default",
    key_id: str | None = None,
) -> None:
    """Write a batch's jobs, ``queued`` and due now, in the session's transaction.

    No per-job ``enqueued`` event is written (the batch row records the submission): it would
    double the rows, and halve the rate, of a 100,000-job insert.
    """
    fixed = {
        "status": JobStatus.QUEUED.value,
        "priority": priority,
        "batch_id": batch_id,
        "attempts": 0,
        "poll_count": 0,
        "poll_errors": 0,
        "transfer_attempts": 0,
        "ambiguous_submits": 0,
        "next_action_at": now,
        "deadline_at": deadline,
        "created_at": now,
        "updated_at": now,
        "tenant": tenant,
        "key_id": key_id,
    }
    with cyclic_gc_paused():
        if session.get_bind().dialect.name == "postgresql":
            _copy(session, jobs, fixed)
        else:
            _insert_many(session, jobs, fixed)


def _copy(session: Session, jobs: Iterable[NewJob], fixed: dict[str, Any]) -> None:
    """COPY ... FROM STDIN, the text built here in large chunks: formatting row by row through
    the driver would cost more than Postgres spends storing them."""
    raw = session.connection().connection.driver_connection  # psycopg, in this transaction
    assert raw is not None
    key_id = _text(fixed["key_id"]) if fixed["key_id"] else "\\N"
    head = f"\t{fixed['status']}\t{fixed['priority']}\t"
    middle = f"\t{fixed['batch_id']}\t"
    tail = (
        f"\t{fixed['attempts']}\t{fixed['poll_count']}\t{fixed['poll_errors']}"
        f"\t{fixed['transfer_attempts']}\t{fixed['ambiguous_submits']}"
        f"\t{fixed['next_action_at'].isoformat()}\t{fixed['deadline_at'].isoformat()}"
        f"\t{fixed['created_at'].isoformat()}\t{fixed['updated_at'].isoformat()}"
        f"\t{_text(fixed['tenant'])}\t{key_id}\n"
    )
    statement = f"COPY jobs ({', '.join(JOB_COLUMNS)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for chunk in _chunks(jobs):
            copy.write("".join(_copy_line(job, head, middle, tail) for job in chunk))


def _copy_line(job: NewJob, head: str, middle: str, tail: str) -> str:
    images = "\\N" if job.images is None else _text(json.dumps(job.images))
    seed = "\\N" if job.seed is None else str(int(job.seed))
    ref = "\\N" if job.ref is None else _text(job.ref)
    meta = "\\N" if job.metadata is None else _text(json.dumps(job.metadata))
    return (
        f"{job.id}{head}{_text(job.prompt)}\t{images}\t{job.aspect_ratio}\t"
        f"{job.resolution}\t{seed}{middle}{int(job.position)}\t{ref}\t{meta}{tail}"
    )


def _text(value: str) -> str:
    return value.translate(_COPY_ESCAPES) if _SPECIAL.search(value) else value


def _chunks(jobs: Iterable[NewJob]) -> Iterator[list[NewJob]]:
    chunk: list[NewJob] = []
    for job in jobs:
        chunk.append(job)
        if len(chunk) == _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _insert_many(session: Session, jobs: Iterable[NewJob], fixed: dict[str, Any]) -> None:
    """Multi-row INSERTs in chunks (SQLite and other backends without COPY)."""
    table = Job.__table__
    assert isinstance(table, Table)
    for chunk in _chunks(jobs):
        session.execute(
            insert(table),
            [
                {
                    **fixed,
                    "id": job.id,
                    "batch_index": job.position,
                    "prompt": job.prompt,
                    "images": job.images,
                    "aspect_ratio": job.aspect_ratio,
                    "resolution": job.resolution,
                    "seed": job.seed,
                    "ref": job.ref,
                    "metadata": job.metadata,
                }
                for job in chunk
            ],
        )


def complete_if_done(session: Session, *, batch_id: uuid.UUID, now: datetime) -> Batch | None:
    """Mark the batch completed if every job is terminal; only the first caller gets it back.

    One guarded statement: ``completed_at IS NULL`` makes a concurrent second completion
    match nothing, so the completion (and its webhook) is recorded exactly once.
    """
    active = exists().where(Job.batch_id == batch_id, Job.status.in_(ACTIVE))
    statement = (
        update(Batch)
        .where(Batch.id == batch_id, Batch.completed_at.is_(None), ~active)
        .values(completed_at=now)
        .returning(Batch.id)
    )
    if session.execute(statement).first() is None:
        return None
    return session.get(Batch, batch_id, populate_existing=True)


# --- reads --------------------------------------------------------------------------------------


def get_batch(session: Session, batch_id: uuid.UUID) -> Batch | None:
    """The batch, or None when there is none or retention is deleting it (``pruned_at``)."""
    batch = session.get(Batch, batch_id, populate_existing=True)
    return None if batch is None or batch.pruned_at is not None else batch


def get_batch_by_idempotency_key(session: Session, key: str) -> Batch | None:
    return session.scalars(select(Batch).where(Batch.idempotency_key == key)).first()


def job_ids(session: Session, *, batch_id: uuid.UUID, limit: int | None = None) -> list[uuid.UUID]:
    """The batch's job ids in submission order."""
    query = select(Job.id).where(Job.batch_id == batch_id).order_by(Job.batch_index).limit(limit)
    return list(session.scalars(query))


def active_job_ids(session: Session, *, batch_id: uuid.UUID) -> list[uuid.UUID]:
    """The batch's jobs that have not ended (``ix_jobs_batch_status``)."""
    query = select(Job.id).where(Job.batch_id == batch_id, Job.status.in_(ACTIVE))
    return list(session.scalars(query))


def counts(session: Session, *, batch_id: uuid.UUID, since: datetime) -> Counts:
    recent = func.count().filter(Job.finished_at >= since)
    query = (
        select(Job.status, func.count(), recent)
        .where(Job.batch_id == batch_id)
        .group_by(Job.status)
    )
    by_status: dict[str, int] = {}
    finished_recently = 0
    for status, count, recent_count in session.execute(query).all():
        by_status[status] = count
        finished_recently += recent_count
    return Counts(by_status, finished_recently)


def manifest_page(
    session: Session, *, batch_id: uuid.UUID, after_index: int, limit: int
) -> list[Job]:
    """The next ``limit`` jobs of the batch after ``after_index`` (keyset pagination)."""
    query = (
        select(Job)
        .where(Job.batch_id == batch_id, Job.batch_index > after_index)
        .order_by(Job.batch_index)
        .limit(limit)
    )
    return list(session.scalars(query))


def images_of(session: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[JobImage]]:
    found: dict[uuid.UUID, list[JobImage]] = {job_id: [] for job_id in job_ids}
    query = (
        select(JobImage)
        .where(JobImage.job_id.in_(list(job_ids)))
        .order_by(JobImage.job_id, JobImage.idx)
    )
    for image in session.scalars(query):
        found[image.job_id].append(image)
    return found


def finished_incomplete(session: Session, *, limit: int) -> list[uuid.UUID]:
    """Batches whose jobs are all terminal but that were never marked completed (a crash
    between a job's commit and the completion check); the sweep completes them."""
    active = exists().where(Job.batch_id == Batch.id, Job.status.in_(ACTIVE))
    query = select(Batch.id).where(Batch.completed_at.is_(None), ~active).limit(limit)
    return list(session.scalars(query))
