"""What each dashboard page shows, as plain data for the templates (no HTML here).

Reads go through ``worker.store.dashboard`` (indexed, bounded) and the same view builders the
HTTP API uses (``worker.service.views``), so a page and ``GET /v1/...`` agree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from models import Job, JobImage
from worker.core.errors import BatchNotFound, JobNotFound
from worker.core.progress import RATE_WINDOW_S
from worker.core.states import ACTIVE, STATUSES, TERMINAL
from worker.core.tenancy import from_micros
from worker.db.engine import session_scope
from worker.service import spend, views, webhooks
from worker.store import batches as batch_store
from worker.store import dashboard as q
from worker.store import jobs as job_store
from worker.store.fleet import read_fleet_state

#: The overview's windows: failures of the last day, throughput of the last hour.
FAILURE_WINDOW = timedelta(hours=24)
THROUGHPUT_WINDOW = timedelta(hours=1)
RECENT_FAILURES = 10
BATCHES_PER_PAGE = 25
GALLERY_PER_PAGE = 48
THUMB_SIZES = (256, 512)


# --- the overview -------------------------------------------------------------------------------


def overview() -> dict[str, Any]:
    """Jobs by state, the fleet, the oldest queued job, recent failures, throughput."""
    now = datetime.now(UTC)
    with session_scope() as session:
        active = q.active_counts(session)
        finished = q.finished_counts(session, since=now - FAILURE_WINDOW)
        codes = q.failures_by_code(session, since=now - FAILURE_WINDOW)
        failures = [
            _failure(job)
            for job in q.recent_failures(session, since=now - FAILURE_WINDOW, limit=RECENT_FAILURES)
        ]
        minutes = q.throughput(session, since=now - THROUGHPUT_WINDOW)
        waiting = q.longest_waiting(session)
    return {
        "now": now,
        "active": {status: active.get(status, 0) for status in ACTIVE},
        "finished": {status: finished.get(status, 0) for status in TERMINAL},
        "failures_by_code": codes,
        "recent_failures": failures,
        "throughput": throughput_chart(minutes, now),
        "longest_waiting": _waiting(waiting, now),
        "fleet": read_fleet_state().as_dict(),
        "spend": _spend_today(now),
    }


def _spend_today(now: datetime) -> dict[str, Any]:
    """Today's (UTC) spend per tenant beside its budgets (``imagegen budgets list``)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    report = spend.report(since=midnight)
    budgets = {row["tenant"]: row for row in spend.list_budgets()}
    rows = [
        {"tenant": name, **report["tenants"].get(name, {}), "budget": budgets.get(name)}
        for name in sorted(set(report["tenants"]) | set(budgets))
    ]
    return {"charged": report["charged"], "possible": report["possible"], "tenants": rows}


def _failure(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "error_code": job.error_code or "unknown",
        "error_message": job.error_message,
        "finished_at": job.finished_at,
        "batch_id": str(job.batch_id) if job.batch_id else None,
        "prompt": job.prompt,
    }


def _waiting(job: Job | None, now: datetime) -> dict[str, Any] | None:
    if job is None:
        return None
    since = job.next_action_at or job.created_at
    return {
        "id": str(job.id),
        "created_at": job.created_at,
        "due_at": since,
        "waiting_s": max((now - since).total_seconds(), 0.0),
        "priority": job.priority,
        "batch_id": str(job.batch_id) if job.batch_id else None,
    }


@dataclass(frozen=True)
class Bar:
    """One minute of the throughput chart, in chart units (SVG user space)."""

    x: int
    label: str
    succeeded: int
    failed: int
    ok_height: float
    failed_height: float


#: The throughput chart's layout in SVG units: the y-axis' labels, then 60 one-minute slots.
CHART_AXIS, CHART_SLOT, CHART_HEIGHT = 44, 16, 120


def axis_ticks(peak: int) -> list[int]:
    """Round values for the y-axis, from 0 to at least ``peak``: 1, 2 or 5 times a power of ten
    apart, at most 5 of them."""
    power = 1
    while True:
        for step in (power, 2 * power, 5 * power):
            if -(-peak // step) <= 4:
                return list(range(0, -(-peak // step) * step + 1, step))
        power *= 10


def throughput_chart(minutes: list[q.Minute], now: datetime) -> dict[str, Any]:
    """Sixty one-minute bars ending now, under a y-axis of round values (jobs a minute)."""
    by_key = {minute.at: minute for minute in minutes}
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    slots = [start + timedelta(minutes=i) for i in range(60)]
    counts = [by_key.get(slot.strftime("%Y-%m-%dT%H:%M")) for slot in slots]
    ok = [m.succeeded if m else 0 for m in counts]
    bad = [(m.failed + m.cancelled) if m else 0 for m in counts]
    peak = max([a + b for a, b in zip(ok, bad, strict=True)] + [1])
    ticks = axis_ticks(peak)
    scale = CHART_HEIGHT / ticks[-1]
    bars = [
        Bar(
            CHART_AXIS + i * CHART_SLOT,
            f"{slot:%H:%M} UTC",
            ok[i],
            bad[i],
            ok[i] * scale,
            bad[i] * scale,
        )
        for i, slot in enumerate(slots)
    ]
    total = sum(ok) + sum(bad)
    return {
        "bars": bars,
        "peak": peak,
        "height": CHART_HEIGHT,
        "width": CHART_AXIS + 60 * CHART_SLOT,
        "axis": CHART_AXIS,
        "slot": CHART_SLOT,
        "ticks": [(value, CHART_HEIGHT - value * scale) for value in ticks],
        "x_labels": [(bars[i].x, f"{slots[i]:%H:%M}") for i in (0, 15, 30, 45)],
        "succeeded": sum(ok),
        "failed": sum(bad),
        "per_minute": total / 60,
        "start": slots[0],
    }


# --- batches ------------------------------------------------------------------------------------


def batch_list(cursor: tuple[datetime, uuid.UUID] | None) -> dict[str, Any]:
    """One page of batches, newest first, each with its progress by state."""
    with session_scope() as session:
        found = q.batches_page(session, before=cursor, limit=BATCHES_PER_PAGE + 1)
        page, more = found[:BATCHES_PER_PAGE], len(found) > BATCHES_PER_PAGE
        others = q.unsucceeded_counts(session, [batch.id for batch in page])
    rows = []
    for batch in page:
        counts = others[batch.id]
        # succeeded jobs are not counted one by one: the rest are, and the total is known
        counts["succeeded"] = max(batch.total - sum(counts.values()), 0)
        rows.append(
            {
                "id": str(batch.id),
                "name": batch.name,
                "total": batch.total,
                "created_at": batch.created_at,
                "completed_at": batch.completed_at,
                "counts": counts,
                "segments": segments(counts, batch.total),
                "done": sum(counts.get(s, 0) for s in TERMINAL),
            }
        )
    last = page[-1] if page and more else None
    return {
        "batches": rows,
        "next": encode_cursor(last.created_at, last.id) if last else None,
        "first_page": cursor is None,
    }


def segments(counts: dict[str, int], total: int) -> list[dict[str, Any]]:
    """The stacked progress bar: one segment per state present, widths in percent."""
    order = ("succeeded", "failed", "cancelled", "transferring", "running", "submitting", "queued")
    shown, x = [], 0.0
    for status in order:
        count = counts.get(status, 0)
        if count and total:
            width = 100.0 * count / total
            shown.append({"status": status, "count": count, "x": x, "width": width})
            x += width
    return shown


def encode_cursor(created_at: datetime, batch_id: uuid.UUID) -> str:
    return f"{created_at.astimezone(UTC).isoformat()}_{batch_id}"


def decode_cursor(value: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The cursor of the batch list, or None (the first page) when absent or malformed."""
    if not value:
        return None
    stamp, _, batch_id = value.rpartition("_")
    try:
        moment = datetime.fromisoformat(stamp)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)), uuid.UUID(batch_id)
    except ValueError:
        return None


@dataclass(frozen=True)
class GalleryPage:
    """Where the gallery is: the filter and the keyset position."""

    where: q.GalleryFilter
    after: int | None = None
    before: int | None = None


def batch_page(batch_id: uuid.UUID, at: GalleryPage) -> dict[str, Any]:
    """A batch: counts, progress and ETA (as ``GET /v1/batches/{id}``), codes, a gallery page,
    its webhook deliveries."""
    with session_scope() as session:
        summary = _summary(session, batch_id)
        gallery = _gallery(session, batch_id, at)
    deliveries = webhooks.for_pages(batch_id=batch_id)
    return {**summary, **gallery, "deliveries": deliveries}


def batch_summary(batch_id: uuid.UUID) -> dict[str, Any]:
    """A batch's counts, progress, ETA and error codes (the live part of its page)."""
    with session_scope() as session:
        return _summary(session, batch_id)


def _summary(session: Session, batch_id: uuid.UUID) -> dict[str, Any]:
    now = datetime.now(UTC)
    batch = batch_store.get_batch(session, batch_id)
    if batch is None:
        raise BatchNotFound(f"no batch with id {batch_id}")
    counts = q.batch_counts(
        session, batch_id=batch_id, since=now - timedelta(seconds=RATE_WINDOW_S)
    )
    status = views.batch_resource(batch, counts, now)
    status["segments"] = segments(status["counts"], batch.total)
    status["tenant"] = batch.tenant
    status["max_spend"] = None if batch.max_spend is None else from_micros(batch.max_spend)
    status["spend"] = spend.batch_spend(session, batch.id)
    return {"batch": status, "error_codes": q.batch_error_codes(session, batch_id=batch_id)}


def _gallery(session: Session, batch_id: uuid.UUID, at: GalleryPage) -> dict[str, Any]:
    found = q.gallery_page(
        session,
        batch_id=batch_id,
        where=at.where,
        after=at.after,
        before=at.before,
        limit=GALLERY_PER_PAGE,
    )
    images = batch_store.images_of(session, [job.id for job in found])
    first = found[0].batch_index if found else None
    last = found[-1].batch_index if found else None
    has_prev = first is not None and q.gallery_has(
        session, batch_id=batch_id, where=at.where, before=first
    )
    has_next = last is not None and q.gallery_has(
        session, batch_id=batch_id, where=at.where, after=last
    )
    return {
        "cards": [_card(job, images[job.id]) for job in found],
        "prev_before": first if has_prev else None,
        "next_after": last if has_next else None,
    }


def _card(job: Job, images: list[JobImage]) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "index": job.batch_index,
        "ref": job.ref,
        "status": job.status,
        "error_code": job.error_code,
        "prompt": job.prompt,
        "images": [thumb(image, 256) for image in images],
    }


def thumb(image: JobImage, size: int) -> dict[str, Any]:
    """A thumbnail's URL (versioned by checksum: cached for good) and its displayed size."""
    scale = min(size / max(image.width, 1), size / max(image.height, 1), 1.0)
    return {
        "url": f"/dashboard/thumbs/{image.job_id}/{image.idx}?size={size}&v={image.sha256[:16]}",
        "full": f"/dashboard/images/{image.job_id}/{image.idx}",
        "thumb_width": max(round(image.width * scale), 1),
        "thumb_height": max(round(image.height * scale), 1),
        "index": image.idx,
    }


# --- one job ------------------------------------------------------------------------------------


def job_page(job_id: uuid.UUID) -> dict[str, Any]:
    """Everything about a job: request, timings, attempts, events, images."""
    with session_scope() as session:
        job = job_store.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        images = job_store.list_images(session, job_id)
        events = job_store.list_events(session, job_id)
        view = views.job_view(job)
        view["timings"] = views.timings(job)
        view["batch_index"] = job.batch_index
    view["images"] = [{**views.image_view(image), **thumb(image, 512)} for image in images]
    view["events"] = [views.event_view(event) for event in events]
    view["can_cancel"] = job.status in ACTIVE
    view["can_retry"] = job.status == "failed"
    view["deliveries"] = webhooks.for_pages(job_id=job_id)
    return view


def known_status(value: str) -> bool:
    return value in STATUSES
