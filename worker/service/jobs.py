"""The producer API: enqueue jobs, read their status, cancel them.

``enqueue`` can run inside the caller's own SQLAlchemy session, so the job exists if and only if
the caller's transaction commits; the broker is nudged only after that commit.
"""

from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Job
from models.base import utcnow
from worker.core import ports
from worker.core.batch_input import MAX_REF_CHARS
from worker.core.errors import BadInput, IdempotencyConflict, JobNotFound
from worker.core.metadata import metadata_problem
from worker.core.request import GenerationRequest, Priority, parse_request
from worker.core.settings import get_settings
from worker.core.tenancy import LOCAL, Principal
from worker.core.untrusted import text_problem
from worker.core.url_policy import check_callback_url
from worker.db.aftercommit import call_after_commit
from worker.db.engine import session_scope
from worker.service import spend, views
from worker.service.health import describe
from worker.service.ids import resolve_job_id
from worker.store import jobs as job_store
from worker.store import tenants, transitions
from worker.telemetry import tracing

log = logging.getLogger("imagegen.jobs")
#: The longest deadline a producer may ask for (30 days).
MAX_DEADLINE_S = 30 * 24 * 3600.0


@dataclass(frozen=True)
class Enqueued:
    """The outcome of an enqueue: the job, and whether this call created it."""

    job_id: uuid.UUID
    #: False when the idempotency key returned the job an earlier call created.
    created: bool


def enqueue(
    request: GenerationRequest | dict[str, Any],
    *,
    priority: Priority | str = Priority.INTERACTIVE,
    idempotency_key: str | None = None,
    deadline_s: float | None = None,
    callback_url: str | None = None,
    ref: str | None = None,
    metadata: dict[str, Any] | None = None,
    session: Session | None = None,
    dispatch: bool = True,
) -> uuid.UUID:
    """Record one generation job and return its id.

    With ``idempotency_key``, enqueueing the same key and request again returns the first
    job's id (a different request with the same key raises :class:`IdempotencyConflict`).
    With ``session``, the row is written in the caller's transaction and dispatched after it
    commits (nothing is sent if it rolls back). ``callback_url`` receives a signed webhook
    when the job ends (see ``worker.engine.webhook_sender``). ``metadata``: a free-form JSON
    object of the caller's, echoed and filterable (``worker.core.metadata``).
    """
    return enqueue_job(
        request,
        priority=priority,
        idempotency_key=idempotency_key,
        deadline_s=deadline_s,
        callback_url=callback_url,
        ref=ref,
        metadata=metadata,
        session=session,
        dispatch=dispatch,
    ).job_id


def enqueue_job(
    request: GenerationRequest | dict[str, Any],
    *,
    priority: Priority | str = Priority.INTERACTIVE,
    idempotency_key: str | None = None,
    deadline_s: float | None = None,
    callback_url: str | None = None,
    ref: str | None = None,
    metadata: dict[str, Any] | None = None,
    session: Session | None = None,
    dispatch: bool = True,
    principal: Principal = LOCAL,
) -> Enqueued:
    """:func:`enqueue`, also telling whether the job was created by this call (recorded as
    ``principal``'s: its tenant and key)."""
    if not isinstance(request, GenerationRequest):
        request = parse_request(request)
    extra = _extra_fields(
        callback_url=callback_url, ref=ref, deadline_s=deadline_s, metadata=metadata
    )
    extra |= {"tenant": principal.tenant, "key_id": principal.key_id}
    priority = _priority(priority)
    if idempotency_key is not None and (problem := text_problem(idempotency_key, 200)):
        raise BadInput([("idempotency_key", problem)])
    scope = nullcontext(session) if session is not None else session_scope()
    with tracing.enqueue_span(priority=priority.value) as traceparent, scope as active:
        direct = dispatch and priority is Priority.INTERACTIVE
        if principal.tenant != LOCAL.tenant:  # the dispatcher shares work between known tenants
            tenants.ensure_tenant(active, principal.tenant)
        outcome = _insert_once(
            active,
            request,
            priority,
            idempotency_key,
            deadline_s,
            {**extra, "traceparent": traceparent},
            dispatched=direct,
        )
        tracing.tag(**{"imagegen.job_id": str(outcome.job_id), "imagegen.created": outcome.created})
        if outcome.created and dispatch:
            _dispatch_after_commit(active, outcome.job_id, direct=direct)
    return outcome


def _extra_fields(
    *,
    callback_url: str | None,
    ref: str | None,
    deadline_s: float | None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate what a producer adds to the request (where to report, its own reference)."""
    problems = []
    if ref is not None and (problem := text_problem(str(ref), MAX_REF_CHARS)):
        problems.append(("ref", problem))
    if deadline_s is not None and not 0 < deadline_s <= MAX_DEADLINE_S:
        problems.append(("deadline_s", f"must be greater than 0 and at most {MAX_DEADLINE_S}"))
    if metadata is not None and (problem := metadata_problem(metadata)):
        problems.append(("metadata", problem))
    try:
        callback_url = check_callback_url(callback_url, get_settings())
    except BadInput as exc:
        problems += exc.problems
    if problems:
        raise BadInput(problems)
    return {"callback_url": callback_url, "ref": ref, "meta": metadata}


def _priority(value: Priority | str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise BadInput([("priority", "must be one of interactive, batch")]) from None


def _insert_once(
    session: Session,
    request: GenerationRequest,
    priority: Priority,
    idempotency_key: str | None,
    deadline_s: float | None,
    extra: dict[str, Any],
    *,
    dispatched: bool,
) -> Enqueued:
    if idempotency_key is not None:
        existing = job_store.get_job_by_idempotency_key(session, idempotency_key)
        if existing is not None:
            return _replayed(existing, request, extra)
    deadline = utcnow() + timedelta(seconds=deadline_s or get_settings().job_deadline_s)
    fields = {**_request_columns(request), **extra}
    try:
        with session.begin_nested():
            job = job_store.insert_job(
                session,
                fields=fields,
                priority=priority.value,
                idempotency_key=idempotency_key,
                deadline_at=deadline,
                dispatched=dispatched,
            )
    except IntegrityError:  # a concurrent enqueue with the same key won the race
        existing = job_store.get_job_by_idempotency_key(session, idempotency_key or "")
        if existing is None:
            raise
        return _replayed(existing, request, extra)
    return Enqueued(job.id, True)


def _request_columns(request: GenerationRequest) -> dict[str, Any]:
    return {
        "prompt": request.prompt,
        "images": request.images,
        "seed": request.seed,
        "aspect_ratio": request.aspect_ratio.value,
        "resolution": request.resolution.value,
    }


def _replayed(existing: Job, request: GenerationRequest, extra: dict[str, Any]) -> Enqueued:
    """The job an idempotency key already names, if it was asked for the same thing."""
    same = (
        existing.tenant == extra["tenant"]
        and existing.request_fields() == request.provider_body()
        and existing.callback_url == extra["callback_url"]
        and existing.ref == extra["ref"]
        and existing.meta == extra["meta"]
    )
    if not same:
        # the key may be another caller's: never name the job it holds
        raise IdempotencyConflict("this idempotency key was already used with a different request")
    return Enqueued(existing.id, False)


def _dispatch_after_commit(session: Session, job_id: uuid.UUID, *, direct: bool) -> None:
    """After the commit: an interactive job goes straight to a worker (its claim checks the
    fleet's limits and hands it back to the dispatcher when they say no); a batch-priority
    job waits for the dispatcher, which is woken up."""

    def send() -> None:
        if not direct:
            ports.current().wake_dispatcher()
            return
        try:
            ports.current().send_step("submit", job_id)
        except Exception as exc:  # the broker is down: the dispatcher sends it again later
            log.warning("dispatch_failed", extra={"job_id": str(job_id), "error": describe(exc)})

    call_after_commit(session, send)


def cancel(job_id: uuid.UUID, *, reason: str = "cancelled by request") -> str:
    """Cancel an active job; every later step sees the row and stops. Returns the status."""
    with session_scope() as session:
        transitions.cancel(session, job_id=job_id, reason=reason)
        job = job_store.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job.status


def details(job_id: uuid.UUID, *, links: views.Linker | None) -> dict[str, Any]:
    """A job as producers see it (HTTP API): status, error, timings, images with links."""
    with session_scope() as session:
        job = job_store.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        view = views.job_resource(job, job_store.list_images(session, job_id), links)
        return view | spend.waiting(session, job)


def status(job_id: uuid.UUID, *, with_events: bool = True) -> dict[str, Any]:
    """Everything known about a job, as plain JSON-ready data."""
    with session_scope() as session:
        job = job_store.get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        view = views.job_view(job) | spend.waiting(session, job)
        view["images"] = [
            views.image_view(image) for image in job_store.list_images(session, job_id)
        ]
        if with_events:
            view["events"] = [views.event_view(e) for e in job_store.list_events(session, job_id)]
        return view


def parse_job_id(value: str) -> uuid.UUID:
    """A job id as typed: the full UUID or a unique prefix (``service.ids``)."""
    return resolve_job_id(value)
