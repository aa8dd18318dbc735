"""The producer API: enqueue jobs, read their status, cancel them.

``enqueue`` can run inside the caller's own SQLAlchemy session, so the job exists if and only if
the caller's transaction commits; the broker is nudged only after that commit.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Job
from models.base import utcnow
from worker import repository as repo
from worker.db import session_scope
from worker.errors import BadInput, JobNotFound
from worker.schemas import GenerationRequest, Priority, parse_request
from worker.settings import get_settings

log = logging.getLogger("imagegen.jobs")


def enqueue(request: GenerationRequest | dict[str, Any], *,
            priority: Priority | str = Priority.INTERACTIVE, idempotency_key: str | None = None,
            deadline_s: float | None = None, session: Session | None = None,
            dispatch: bool = True) -> uuid.UUID:
    """Record one generation job and return its id.

    With ``idempotency_key``, enqueueing the same key again returns the first job's id.
    With ``session``, the row is written in the caller's transaction and dispatched after it
    commits (nothing is sent if it rolls back).
    """
    if not isinstance(request, GenerationRequest):
        request = parse_request(request)
    priority = _priority(priority)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise BadInput([("idempotency_key", "must be 1 to 200 characters")])
    scope = nullcontext(session) if session is not None else session_scope()
    with scope as active:
        job_id, created = _insert_once(active, request, priority, idempotency_key, deadline_s)
        if created and dispatch:
            _dispatch_after_commit(active, job_id)
    return job_id


def _priority(value: Priority | str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise BadInput([("priority", "must be one of interactive, batch")]) from None


def _insert_once(session: Session, request: GenerationRequest, priority: Priority,
                 idempotency_key: str | None, deadline_s: float | None) -> tuple[uuid.UUID, bool]:
    if idempotency_key is not None:
        existing = repo.get_job_by_idempotency_key(session, idempotency_key)
        if existing is not None:
            return existing.id, False
    deadline = utcnow() + timedelta(seconds=deadline_s or get_settings().job_deadline_s)
    fields = {"prompt": request.prompt, "images": request.images, "seed": request.seed,
              "aspect_ratio": request.aspect_ratio.value,
              "resolution": request.resolution.value}
    try:
        with session.begin_nested():
            job = repo.insert_job(session, fields=fields, priority=priority.value,
                                  idempotency_key=idempotency_key, deadline_at=deadline)
    except IntegrityError:  # a concurrent enqueue with the same key won the race
        existing = repo.get_job_by_idempotency_key(session, idempotency_key or "")
        if existing is None:
            raise
        return existing.id, False
    return job.id, True


def _dispatch_after_commit(session: Session, job_id: uuid.UUID) -> None:
    def send(_: Session) -> None:
        from worker.tasks import dispatch

        try:
            dispatch([job_id])
        except Exception:  # the broker is down: the row stays queued and is found again
            log.exception("dispatch_failed", extra={"job_id": str(job_id)})

    event.listen(session, "after_commit", send, once=True)


def cancel(job_id: uuid.UUID, *, reason: str = "cancelled by request") -> str:
    """Cancel an active job; every later step sees the row and stops. Returns the status."""
    with session_scope() as session:
        repo.cancel(session, job_id=job_id, reason=reason)
        job = repo.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job.status


def status(job_id: uuid.UUID, *, with_events: bool = True) -> dict[str, Any]:
    """Everything known about a job, as plain JSON-ready data."""
    with session_scope() as session:
        job = repo.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        view = job_view(job)
        view["images"] = [image_view(image) for image in repo.list_images(session, job_id)]
        if with_events:
            view["events"] = [event_view(e) for e in repo.list_events(session, job_id)]
        return view


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.id), "status": job.status, "priority": job.priority,
        "request": job.request_fields(), "error_code": job.error_code,
        "error_message": job.error_message, "prediction_id": job.prediction_id,
        "provider_status": job.provider_status, "attempts": job.attempts,
        "poll_count": job.poll_count, "transfer_attempts": job.transfer_attempts,
        "ambiguous_submits": job.ambiguous_submits, "idempotency_key": job.idempotency_key,
        "created_at": _iso(job.created_at), "submitted_at": _iso(job.submitted_at),
        "generated_at": _iso(job.generated_at), "finished_at": _iso(job.finished_at),
        "next_poll_at": _iso(job.next_poll_at), "deadline_at": _iso(job.deadline_at),
    }


def image_view(image: Any) -> dict[str, Any]:
    return {"index": image.idx, "bucket": image.bucket, "key": image.key,
            "content_type": image.content_type, "bytes": image.bytes, "sha256": image.sha256,
            "width": image.width, "height": image.height, "nsfw": image.nsfw}


def event_view(item: Any) -> dict[str, Any]:
    return {"at": _iso(item.at), "event": item.event, "from": item.from_status,
            "to": item.to_status, "detail": item.detail}


def parse_job_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadInput([("job_id", "must be a job id (a UUID)")]) from None
