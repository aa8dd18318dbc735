"""Jobs and batches as their readers see them: the HTTP API, webhook events, manifests (the
``*_resource`` and ``manifest_line`` views) and the CLI (``job_view``, ``image_view``,
``event_view``: ``imagegen status --json``, ``jobs list``).

Plain JSON-ready dicts built from rows, every time written by ``core.timespec.iso``; download
links are presigned by the object store. The API's and the CLI's views are documented output
formats of their own, so both stay, built from the same rows and helpers.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from models import Batch, Job, JobEvent, JobImage
from worker.core import progress
from worker.core.states import STATUSES, TERMINAL, UNSUCCESSFUL
from worker.core.timespec import iso
from worker.store.batches import Counts


class Linker(Protocol):
    """What presigns a download link for a stored object (``ObjectStore.url_for``), and for how
    long such a link works (``IMAGEGEN_PRESIGN_EXPIRY_S``; None: for ever)."""

    link_lifetime_s: int | None

    def url_for(self, key: str) -> str: ...


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def job_resource(job: Job, images: Iterable[JobImage], links: Linker | None) -> dict[str, Any]:
    """A job: status, error, attempts, timings and its images with download links."""
    error = (
        {"code": job.error_code, "message": job.error_message}
        if job.error_code or job.error_message
        else None
    )
    return {
        "id": str(job.id),
        "status": job.status,
        "ref": job.ref,
        "batch_id": str(job.batch_id) if job.batch_id else None,
        "priority": job.priority,
        "request": job.request_fields(),
        "callback_url": job.callback_url,
        "metadata": job.meta,
        "error": error,
        "attempts": job.attempts,
        "polls": job.poll_count,
        "transfer_attempts": job.transfer_attempts,
        "ambiguous_submits": job.ambiguous_submits,
        "timings": timings(job),
        "images": [image_resource(image, links) for image in images],
        "tenant": job.tenant,
        "key_id": job.key_id,
    }


def timings(job: Job) -> dict[str, Any]:
    return {
        "created_at": iso(job.created_at),
        "submitted_at": iso(job.submitted_at),
        "generated_at": iso(job.generated_at),
        "finished_at": iso(job.finished_at),
        "deadline_at": iso(job.deadline_at),
        "queued_s": _seconds(job.created_at, job.submitted_at),
        "generation_s": _seconds(job.submitted_at, job.generated_at),
        "transfer_s": _seconds(job.generated_at, job.finished_at),
        "total_s": _seconds(job.created_at, job.finished_at),
    }


def image_resource(
    image: JobImage, links: Linker | None, *, with_url: bool = True
) -> dict[str, Any]:
    """An image row for the API (with its URL and when the URL stops working: ``expires_at``,
    counted from before the link was signed) and the CLI (``with_url=False``)."""
    url = _link(image.key, links) if with_url else {}
    return {
        "index": image.idx,
        **url,
        "bucket": image.bucket,
        "key": image.key,
        "content_type": image.content_type,
        "bytes": image.bytes,
        "sha256": image.sha256,
        "width": image.width,
        "height": image.height,
        "nsfw": image.nsfw,
    }


def _link(key: str, links: Linker | None) -> dict[str, Any]:
    if links is None:
        return {"url": None, "expires_at": None}
    lifetime = links.link_lifetime_s
    expires = datetime.now(UTC) + timedelta(seconds=lifetime) if lifetime is not None else None
    return {
        "url": links.url_for(key),
        "expires_at": iso(expires.replace(microsecond=0)) if expires else None,
    }


def batch_resource(batch: Batch, counts: Counts, now: datetime) -> dict[str, Any]:
    """A batch: counts by state, progress, throughput and an estimate of the time left."""
    by_status = {status: counts.by_status.get(status, 0) for status in STATUSES}
    done = sum(by_status[status] for status in TERMINAL)
    elapsed = ((batch.completed_at or now) - batch.created_at).total_seconds()
    recent = 0 if batch.completed_at else counts.finished_recently  # done: the whole run
    rate = progress.rate_per_s(done=done, elapsed_s=elapsed, recent_done=recent)
    eta = progress.eta_s(remaining=batch.total - done, rate=rate)
    return {
        "id": str(batch.id),
        "name": batch.name,
        "total": batch.total,
        "counts": by_status,
        "done": done,
        "progress": round(done / batch.total, 4) if batch.total else 1.0,
        "completed": batch.completed_at is not None,
        "rate_per_s": round(rate, 3),
        "eta_s": round(eta, 1) if eta is not None else None,
        "elapsed_s": round(elapsed, 1),
        "callback_url": batch.callback_url,
        "metadata": batch.meta,
        "tenant": batch.tenant,
        "created_at": iso(batch.created_at),
        "completed_at": iso(batch.completed_at),
    }


def manifest_line(job: Job, images: Iterable[JobImage]) -> dict[str, Any]:
    """One manifest line: the job's position in the batch (from 0), ref, job id, the prompt
    and parameters asked for, its metadata, status, error, and each stored object with its
    checksum and size."""
    request = job.request_fields()
    return {
        "index": job.batch_index,
        "ref": job.ref,
        "job_id": str(job.id),
        "prompt": request.pop("prompt"),
        "parameters": request,
        "metadata": job.meta,
        "status": job.status,
        "error_code": job.error_code,
        "error_message": job.error_message if job.status in UNSUCCESSFUL else None,
        "images": [
            {
                "index": image.idx,
                "bucket": image.bucket,
                "key": image.key,
                "bytes": image.bytes,
                "sha256": image.sha256,
                "width": image.width,
                "height": image.height,
                "content_type": image.content_type,
            }
            for image in images
        ],
    }


# --- the CLI's views (``imagegen status --json``, ``imagegen jobs list --json``) ---------------


def job_view(job: Job) -> dict[str, Any]:
    """A job as ``imagegen status --json`` prints it: flat, with every timestamp."""
    return {
        "id": str(job.id),
        "status": job.status,
        "priority": job.priority,
        "batch_id": str(job.batch_id) if job.batch_id else None,
        "ref": job.ref,
        "callback_url": job.callback_url,
        "request": job.request_fields(),
        "metadata": job.meta,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "prediction_id": job.prediction_id,
        "provider_status": job.provider_status,
        "attempts": job.attempts,
        "poll_count": job.poll_count,
        "transfer_attempts": job.transfer_attempts,
        "ambiguous_submits": job.ambiguous_submits,
        "idempotency_key": job.idempotency_key,
        "created_at": iso(job.created_at),
        "submitted_at": iso(job.submitted_at),
        "generated_at": iso(job.generated_at),
        "finished_at": iso(job.finished_at),
        "next_poll_at": iso(job.next_poll_at),
        "deadline_at": iso(job.deadline_at),
    }


def image_view(image: JobImage) -> dict[str, Any]:
    """An image as the CLI prints it: the API's view without the download link."""
    return image_resource(image, links=None, with_url=False)


def event_view(item: JobEvent) -> dict[str, Any]:
    """One entry of a job's event log."""
    return {
        "at": iso(item.at),
        "event": item.event,
        "from": item.from_status,
        "to": item.to_status,
        "detail": item.detail,
    }
