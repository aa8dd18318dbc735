"""Read-only SQL of the web dashboard (``api/dashboard``); every query is bounded by an index.

- the overview reads active jobs through the partial index ``ix_jobs_active_next`` and recent
  finishes through ``ix_jobs_finished_at``: never a scan of every job ever run;
- a batch's counts and gallery go through ``ix_jobs_batch_status`` (batch, state, position),
  page by page in batch order (keyset pagination, no OFFSET);
- the batch list goes through ``ix_batches_created_at``, newest first, keyset on (time, id).

Writes stay in the modules of ``store`` that own them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, func, select, tuple_
from sqlalchemy.orm import Session

from models import Batch, Job, JobImage
from worker.core.states import ACTIVE, STATUSES, TERMINAL, UNSUCCESSFUL, JobStatus
from worker.core.untrusted import PG_INT_MAX, PG_INT_MIN
from worker.store.batches import Counts

#: Every state but ``succeeded``: what a batch list row counts (succeeded = total - these).
NOT_SUCCEEDED = tuple(s for s in STATUSES if s is not JobStatus.SUCCEEDED)


# --- the overview -------------------------------------------------------------------------------


def active_counts(session: Session) -> dict[str, int]:
    """Active jobs by state (the partial index holds exactly those rows)."""
    query = select(Job.status, func.count()).where(Job.status.in_(ACTIVE)).group_by(Job.status)
    return {status: int(count) for status, count in session.execute(query)}


def finished_counts(session: Session, *, since: datetime) -> dict[str, int]:
    """Jobs that ended since ``since``, by final state."""
    query = (
        select(Job.status, func.count())
        .where(Job.finished_at >= since, Job.status.in_(TERMINAL))
        .group_by(Job.status)
    )
    return {status: int(count) for status, count in session.execute(query)}


def failures_by_code(session: Session, *, since: datetime) -> dict[str, int]:
    """Jobs that failed since ``since``, by error code, most frequent first."""
    code = func.coalesce(Job.error_code, "unknown")
    query = (
        select(code, func.count())
        .where(Job.finished_at >= since, Job.status == JobStatus.FAILED)
        .group_by(code)
        .order_by(func.count().desc(), code)
    )
    return {name: int(count) for name, count in session.execute(query)}


def recent_failures(session: Session, *, since: datetime, limit: int) -> list[Job]:
    """The latest failed jobs (since ``since``), newest first."""
    query = (
        select(Job)
        .where(Job.finished_at >= since, Job.status == JobStatus.FAILED)
        .order_by(Job.finished_at.desc(), Job.id)
        .limit(limit)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class Minute:
    """How many jobs ended in one minute (``at``: its first second, ISO 8601 text in UTC)."""

    at: str
    succeeded: int
    failed: int
    cancelled: int


def throughput(session: Session, *, since: datetime) -> list[Minute]:
    """Finished jobs per minute since ``since`` (only the minutes in which some ended)."""
    minute = _minute(session, Job.finished_at)
    query = (
        select(minute, Job.status, func.count())
        .where(Job.finished_at >= since, Job.status.in_(TERMINAL))
        .group_by(minute, Job.status)
        .order_by(minute)
    )
    by_minute: dict[str, dict[str, int]] = {}
    for at, status, count in session.execute(query):
        key = at if isinstance(at, str) else at.strftime("%Y-%m-%dT%H:%M")
        by_minute.setdefault(key, {})[status] = int(count)
    return [
        Minute(at, c.get("succeeded", 0), c.get("failed", 0), c.get("cancelled", 0))
        for at, c in by_minute.items()
    ]


def _minute(session: Session, column: ColumnElement[datetime] | object) -> ColumnElement[str]:
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("minute", func.timezone("UTC", column))
    return func.strftime("%Y-%m-%dT%H:%M", column)  # SQLite keeps UTC text


def longest_waiting(session: Session) -> Job | None:
    """The queued job that has been due the longest (the head of the partial index)."""
    query = (
        select(Job)
        .where(Job.status == JobStatus.QUEUED)
        .order_by(Job.next_action_at, Job.id)
        .limit(1)
    )
    return session.scalars(query).first()


# --- batches ------------------------------------------------------------------------------------


def batches_page(
    session: Session, *, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Batch]:
    """Batches newest first, ``limit`` of them, older than the cursor ``before``."""
    query = (
        select(Batch)
        .where(Batch.pruned_at.is_(None))
        .order_by(Batch.created_at.desc(), Batch.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(tuple_(Batch.created_at, Batch.id) < tuple_(*before))
    return list(session.scalars(query))


def unsucceeded_counts(
    session: Session, batch_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Per batch, its jobs in every state but ``succeeded`` (the large, uninteresting part
    of a finished batch is skipped by the index instead of counted)."""
    found: dict[uuid.UUID, dict[str, int]] = {batch_id: {} for batch_id in batch_ids}
    if not batch_ids:
        return found
    query = (
        select(Job.batch_id, Job.status, func.count())
        .where(Job.batch_id.in_(list(batch_ids)), Job.status.in_(NOT_SUCCEEDED))
        .group_by(Job.batch_id, Job.status)
    )
    for batch_id, status, count in session.execute(query):
        if batch_id is not None:  # always, given the filter: for the type checker
            found[batch_id][status] = int(count)
    return found


def batch_counts(session: Session, *, batch_id: uuid.UUID, since: datetime) -> Counts:
    """A batch's jobs by state (index only) and how many ended since ``since``."""
    by_status = {
        status: int(count)
        for status, count in session.execute(
            select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
        )
    }
    recent = (
        session.scalar(
            select(func.count()).where(Job.finished_at >= since, Job.batch_id == batch_id)
        )
        or 0
    )
    return Counts(by_status, int(recent))


def batch_error_codes(session: Session, *, batch_id: uuid.UUID) -> dict[str, int]:
    """Error codes of the batch's failed and cancelled jobs, most frequent first."""
    code = func.coalesce(Job.error_code, "unknown")
    query = (
        select(code, func.count())
        .where(Job.batch_id == batch_id, Job.status.in_(UNSUCCESSFUL))
        .group_by(code)
        .order_by(func.count().desc(), code)
    )
    return {name: int(count) for name, count in session.execute(query)}


@dataclass(frozen=True)
class GalleryFilter:
    """Which of a batch's jobs the gallery shows: states (all when empty), one error code."""

    statuses: tuple[str, ...] = ()
    error_code: str | None = None


def gallery_page(
    session: Session,
    *,
    batch_id: uuid.UUID,
    where: GalleryFilter,
    after: int | None = None,
    before: int | None = None,
    limit: int,
) -> list[Job]:
    """One page of a batch's jobs in batch order: after position ``after`` (the next page) or
    before position ``before`` (the previous one); returned in batch order either way."""
    query = _gallery(batch_id, where)
    if before is not None:
        query = query.where(Job.batch_index < before).order_by(Job.batch_index.desc())
        return list(reversed(list(session.scalars(query.limit(limit)))))
    if after is not None:
        query = query.where(Job.batch_index > after)
    return list(session.scalars(query.order_by(Job.batch_index).limit(limit)))


def gallery_has(
    session: Session,
    *,
    batch_id: uuid.UUID,
    where: GalleryFilter,
    after: int | None = None,
    before: int | None = None,
) -> bool:
    """Whether any job of the filter lies after ``after`` or before ``before``."""
    query = _gallery(batch_id, where)
    if after is not None:
        query = query.where(Job.batch_index > after)
    if before is not None:
        query = query.where(Job.batch_index < before)
    return session.scalars(query.with_only_columns(Job.id).limit(1)).first() is not None


def _gallery(batch_id: uuid.UUID, where: GalleryFilter) -> Select[Job]:
    conditions: list[ColumnElement[bool]] = [Job.batch_id == batch_id]
    if where.statuses:
        conditions.append(Job.status.in_(list(where.statuses)))
    if where.error_code is not None:
        # failed and cancelled carry codes: the state range of the index stays narrow
        statuses = [s for s in where.statuses if s in UNSUCCESSFUL] or list(UNSUCCESSFUL)
        code = (
            Job.error_code.is_(None)
            if where.error_code == "unknown"
            else Job.error_code == where.error_code
        )
        conditions.append(and_(Job.status.in_(statuses), code))
    return select(Job).where(*conditions)


# --- one job ------------------------------------------------------------------------------------


def image_row(session: Session, *, job_id: uuid.UUID, index: int) -> JobImage | None:
    """One stored image of a job (the unique (job, index) key)."""
    if not PG_INT_MIN <= index <= PG_INT_MAX:  # no row has it; Postgres would refuse the query
        return None
    query = select(JobImage).where(JobImage.job_id == job_id, JobImage.idx == index)
    return session.scalars(query).first()
