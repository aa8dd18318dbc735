"""Retention: delete finished jobs older than a cutoff, in bounded batches.

Each batch picks the oldest finished jobs (``succeeded``, ``failed``, ``cancelled`` with
``finished_at`` before the cutoff), deletes their stored objects first when asked, then the
rows (events, image rows and webhook deliveries go with them by ``ON DELETE CASCADE``) in a
short transaction of its own. Objects go before rows so that an interrupted run leaves rows
that the next run finds again, never objects nobody knows about; deleting an object twice is
harmless.

A batch is never pruned in part: its jobs go only with the batch, and only once every one of
them finished before the cutoff. The batch is marked first (``pruned_at``; from then on it
answers 404, never a partial count or manifest), then its jobs are deleted like the others,
in bounded transactions, then its row. A run interrupted in the middle of a batch leaves it
marked, and the next run finishes it first. Batches completed before the cutoff whose jobs are
all gone are deleted at the end.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from models.base import utcnow
from worker.blobs.storage import store_from_settings
from worker.core.settings import Settings
from worker.db.engine import session_scope
from worker.store import pruning

log = logging.getLogger("imagegen.retention")

#: The longest a scheduled prune works before the next run continues (15 minutes).
MAX_RUN_S = 900.0


class ObjectDeleter(Protocol):
    """The part of an object store pruning needs."""

    bucket: str

    def delete(self, keys: Sequence[str]) -> None: ...


@dataclass
class PruneReport:
    cutoff: datetime
    dry_run: bool
    jobs: int = 0
    events: int = 0
    images: int = 0
    objects_deleted: int = 0
    #: Image rows in another bucket than the configured store's: their objects were left.
    objects_skipped: int = 0
    batches: int = 0
    batch_rows: int = 0
    complete: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cutoff": self.cutoff.isoformat()}


@dataclass(frozen=True)
class PrunePlan:
    older_than: timedelta
    batch_size: int = 500
    store: ObjectDeleter | None = None
    #: Stop after this many seconds (the next run continues); None: until done.
    time_budget_s: float | None = None


def prune_plan(settings: Settings) -> PrunePlan | None:
    """The scheduled prune (``imagegen beat``'s ``imagegen.prune``) the settings ask for, or
    None when retention is off (``IMAGEGEN_PRUNE_OLDER_THAN_DAYS`` unset). Each run works for
    at most one schedule interval (capped at :data:`MAX_RUN_S`) and the next one continues;
    stored objects go too with ``IMAGEGEN_PRUNE_DELETE_OBJECTS=true``."""
    if settings.prune_older_than_days is None:
        return None
    store = store_from_settings(settings) if settings.prune_delete_objects else None
    return PrunePlan(
        older_than=timedelta(days=settings.prune_older_than_days),
        batch_size=settings.prune_batch_size,
        store=store,
        time_budget_s=min(settings.prune_interval_s, MAX_RUN_S),
    )


def preview(older_than: timedelta) -> PruneReport:
    """What ``prune`` would delete, without deleting anything."""
    report = PruneReport(cutoff=utcnow() - older_than, dry_run=True)
    with session_scope() as session:
        report.jobs, report.images = pruning.count_prunable(session, cutoff=report.cutoff)
    return report


def prune(plan: PrunePlan, *, on_batch: Callable[[PruneReport], None] | None = None) -> PruneReport:
    """Delete finished jobs older than ``plan.older_than``; returns what was deleted."""
    report = PruneReport(cutoff=utcnow() - plan.older_than, dry_run=False)
    started = time.monotonic()

    def over_time() -> bool:
        if plan.time_budget_s is not None and time.monotonic() - started > plan.time_budget_s:
            report.complete = False
        return not report.complete

    while not over_time() and _prune_batch(plan, report):
        if on_batch is not None:
            on_batch(report)
    while not over_time() and _prune_whole_batch(plan, report, on_batch, over_time):
        pass
    with session_scope() as session:
        report.batch_rows += pruning.delete_empty_batches(session, cutoff=report.cutoff)
    log.info("pruned", extra=report.as_dict())
    return report


def _prune_batch(plan: PrunePlan, report: PruneReport) -> bool:
    """One transaction's worth of loose jobs (of no batch); False when none was left."""
    with session_scope() as session:
        job_ids = pruning.prunable_job_ids(session, cutoff=report.cutoff, limit=plan.batch_size)
    return _delete(plan, report, job_ids, batch_id=None)


def _prune_whole_batch(
    plan: PrunePlan,
    report: PruneReport,
    on_batch: Callable[[PruneReport], None] | None,
    over_time: Callable[[], bool],
) -> bool:
    """Mark the next prunable batch, delete its jobs chunk by chunk, then its row; False when
    no batch was left (or time ran out in the middle: the next run finishes it)."""
    with session_scope() as session:
        found = pruning.prunable_batches(session, cutoff=report.cutoff, limit=1)
        if not found:
            return False
        if not pruning.mark_batch(session, batch_id=found[0], cutoff=report.cutoff, now=utcnow()):
            return True  # it changed meanwhile (a retry): look again
    while True:
        with session_scope() as session:
            job_ids = pruning.batch_job_ids(session, batch_id=found[0], limit=plan.batch_size)
        if not _delete(plan, report, job_ids, batch_id=found[0]):
            break
        if on_batch is not None:
            on_batch(report)
        if over_time():
            return False
    with session_scope() as session:
        report.batch_rows += pruning.delete_batch(session, batch_id=found[0])
    return True


def _delete(
    plan: PrunePlan, report: PruneReport, job_ids: list[uuid.UUID], *, batch_id: uuid.UUID | None
) -> bool:
    """Delete these jobs (objects first, when asked) in one transaction; False if none."""
    if not job_ids:
        return False
    with session_scope() as session:
        objects = pruning.stored_objects(session, job_ids)
        events = pruning.count_events(session, job_ids)
    if plan.store is not None:
        _delete_objects(plan.store, objects, report)
    with session_scope() as session:
        if batch_id is None:
            deleted = pruning.delete_jobs(session, job_ids=job_ids, cutoff=report.cutoff)
        else:
            deleted = pruning.delete_batch_jobs(session, batch_id=batch_id, job_ids=job_ids)
    report.jobs += deleted
    report.events += events  # counted just before: exact unless another prune raced
    report.images += len(objects)
    report.batches += 1
    return deleted > 0 or batch_id is None  # a batch's chunk that deleted nothing: stop


def _delete_objects(
    store: ObjectDeleter, objects: list[tuple[str, str]], report: PruneReport
) -> None:
    keys = [key for bucket, key in objects if bucket == store.bucket]
    if len(keys) < len(objects):
        log.warning(
            "prune_objects_in_other_bucket",
            extra={"count": len(objects) - len(keys), "bucket": store.bucket},
        )
    store.delete(keys)
    report.objects_deleted += len(keys)
    report.objects_skipped += len(objects) - len(keys)
