"""The batch producer API: enqueue thousands of jobs at once, follow them, read the manifest.

``enqueue_batch`` validates every item first (nothing is written if one is bad), then writes the
batch row and all its jobs in one transaction with a bulk insert (``COPY`` on Postgres), in the
caller's session if one is given: the jobs exist if and only if that transaction commits, and
the broker is nudged only after the commit. Batch jobs run at ``batch`` priority.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import Batch
from models.base import utcnow
from worker.core import ports, tenancy
from worker.core.batch_input import BatchItem, check_items, parse_list
from worker.core.errors import BadInput, BadLines, BatchNotFound, IdempotencyConflict
from worker.core.metadata import MAX_METADATA_BYTES, merged, metadata_problem, serialized_size
from worker.core.progress import RATE_WINDOW_S
from worker.core.request import Priority
from worker.core.settings import get_settings
from worker.core.tenancy import LOCAL, Principal
from worker.core.untrusted import text_problem
from worker.core.url_policy import check_callback_url
from worker.db.aftercommit import call_after_commit
from worker.db.engine import session_scope
from worker.service import spend, views
from worker.service.ids import resolve_batch_id
from worker.service.jobs import MAX_DEADLINE_S
from worker.service.spend import parse_amount
from worker.store import batches as batch_store
from worker.store import tenants
from worker.store.batches import NewJob

log = logging.getLogger("imagegen.batches")

MAX_NAME_CHARS = 200
_MANIFEST_PAGE = 1_000


@dataclass(frozen=True)
class BatchReceipt:
    """What ``enqueue_batch`` did: the batch, its job ids in item order, and whether it was
    created by this call (False when an idempotency key returned an earlier batch)."""

    batch_id: uuid.UUID
    job_ids: list[uuid.UUID]
    created: bool


@dataclass(frozen=True)
class _Owner:
    """Who submits the batch, and its spending cap (micro-units)."""

    tenant: str
    key_id: str | None
    max_spend: int | None


@dataclass(frozen=True)
class _Options:
    name: str | None
    callback_url: str | None
    deadline_s: float
    idempotency_key: str | None
    metadata: dict[str, Any] | None = None


def enqueue_batch(
    items: Sequence[BatchItem | Mapping[str, Any]],
    *,
    name: str | None = None,
    callback_url: str | None = None,
    deadline_s: float | None = None,
    idempotency_key: str | None = None,
    metadata: dict[str, Any] | None = None,
    session: Session | None = None,
    dispatch: bool = True,
    principal: Principal = LOCAL,
    max_spend: float | str | None = None,
) -> BatchReceipt:
    """Record a batch of jobs (validated requests, or raw dicts with an optional ``ref``).

    ``callback_url`` receives one signed ``batch.completed`` event when every job has ended.
    ``deadline_s`` applies to every job. With ``idempotency_key``, the same key and items
    return the first batch; different items raise :class:`IdempotencyConflict`.
    ``metadata`` is the batch's; each item's own (``{"metadata": {...}}``) is merged over it.
    The batch and its jobs are ``principal``'s; ``max_spend`` (in the account's currency)
    caps what its submissions may cost: past it, its jobs wait.
    """
    batch_items = _validated(items)
    options = _options(
        name=name,
        callback_url=callback_url,
        deadline_s=deadline_s,
        idempotency_key=idempotency_key,
        metadata=metadata,
    )
    _check_merged(batch_items, options.metadata)
    owner = _Owner(principal.tenant, principal.key_id, parse_amount(max_spend, "max_spend"))
    scope = nullcontext(session) if session is not None else session_scope()
    with scope as active:
        if owner.tenant != LOCAL.tenant:  # the dispatcher shares work between known tenants
            tenants.ensure_tenant(active, owner.tenant)
        receipt = _insert_once(active, batch_items, options, owner)
        if receipt.created and dispatch:
            call_after_commit(active, nudge, receipt.job_ids)
    return receipt


def _validated(items: Sequence[BatchItem | Mapping[str, Any]]) -> list[BatchItem]:
    max_jobs = get_settings().batch_max_jobs
    if items and all(isinstance(item, BatchItem) for item in items):
        return check_items(
            [item for item in items if isinstance(item, BatchItem)], max_jobs=max_jobs
        )
    return parse_list(
        [dict(item) if isinstance(item, Mapping) else item for item in items], max_jobs=max_jobs
    )


def _options(
    *,
    name: str | None,
    callback_url: str | None,
    deadline_s: float | None,
    idempotency_key: str | None,
    metadata: dict[str, Any] | None = None,
) -> _Options:
    settings = get_settings()
    problems: list[tuple[str, str]] = []
    if name is not None and (problem := text_problem(name, MAX_NAME_CHARS)):
        problems.append(("name", problem))
    if deadline_s is not None and not 0 < deadline_s <= MAX_DEADLINE_S:
        problems.append(("deadline_s", f"must be greater than 0 and at most {MAX_DEADLINE_S}"))
    if idempotency_key is not None and (problem := text_problem(idempotency_key, 200)):
        problems.append(("idempotency_key", problem))
    if metadata is not None and (problem := metadata_problem(metadata)):
        problems.append(("metadata", problem))
    try:
        check_callback_url(callback_url, settings)
    except BadInput as exc:
        problems += exc.problems
    if problems:
        raise BadInput(problems)
    return _Options(
        name, callback_url, deadline_s or settings.job_deadline_s, idempotency_key, metadata
    )


def _check_merged(items: Sequence[BatchItem], base: dict[str, Any] | None) -> None:
    """Each item's metadata merged over the batch's must keep to the size limit."""
    if base is None:
        return
    problems = [
        (number, "metadata", f"merged with the batch's must be at most {MAX_METADATA_BYTES} bytes")
        for number, item in enumerate(items, 1)
        if item.metadata and serialized_size(merged(base, item.metadata)) > MAX_METADATA_BYTES
    ]
    if problems:
        raise BadLines(problems)


def _digest(items: Sequence[BatchItem], options: _Options, owner: _Owner) -> str:
    """A fingerprint of what was asked, to tell a replay from a different batch."""
    head: list[Any] = [options.name, options.callback_url, options.deadline_s]
    if options.metadata is not None:  # only then: digests of batches before metadata hold
        head.append(options.metadata)
    if owner != _Owner(LOCAL.tenant, LOCAL.key_id, None):  # as before tenants, for the default
        head += [owner.tenant, owner.max_spend]
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    for item in items:
        line: list[Any] = [item.ref, item.request.provider_body()]
        if item.metadata is not None:
            line.append(item.metadata)
        digest.update(json.dumps(line, sort_keys=True).encode())
    return digest.hexdigest()


def _insert_once(
    session: Session, items: list[BatchItem], options: _Options, owner: _Owner
) -> BatchReceipt:
    digest = _digest(items, options, owner) if options.idempotency_key else None
    if options.idempotency_key:
        existing = batch_store.get_batch_by_idempotency_key(session, options.idempotency_key)
        if existing is not None:
            return _replayed(session, existing, digest)
    now = utcnow()
    batch = Batch(
        id=uuid.uuid4(),
        name=options.name,
        idempotency_key=options.idempotency_key,
        request_sha256=digest,
        total=len(items),
        callback_url=options.callback_url,
        meta=options.metadata,
        created_at=now,
        tenant=owner.tenant,
        key_id=owner.key_id,
        max_spend=owner.max_spend,
    )
    try:
        with session.begin_nested():
            batch_store.insert_batch(session, batch=batch)
    except IntegrityError:  # a concurrent submit with the same key won the race
        existing = batch_store.get_batch_by_idempotency_key(session, options.idempotency_key or "")
        if existing is None:
            raise
        return _replayed(session, existing, digest)
    job_ids = _insert_jobs(session, batch.id, items, now, options, owner)
    log.info("batch_enqueued", extra={"batch_id": str(batch.id), "jobs": len(job_ids)})
    return BatchReceipt(batch.id, job_ids, True)


def _replayed(session: Session, existing: Batch, digest: str | None) -> BatchReceipt:
    if existing.request_sha256 != digest:
        # the key may be another caller's: never name the batch it holds
        raise IdempotencyConflict("this idempotency key was already used with a different batch")
    return BatchReceipt(existing.id, batch_store.job_ids(session, batch_id=existing.id), False)


def _insert_jobs(
    session: Session,
    batch_id: uuid.UUID,
    items: list[BatchItem],
    now: datetime,
    options: _Options,
    owner: _Owner,
) -> list[uuid.UUID]:
    job_ids = [uuid.uuid4() for _ in items]
    # a generator: on Postgres each chunk is built while the server stores the previous one
    jobs = (
        NewJob(
            job_id,
            index,
            item.request.prompt,
            item.request.images,
            item.request.aspect_ratio.value,
            item.request.resolution.value,
            item.request.seed,
            item.ref,
            merged(options.metadata, item.metadata),
        )
        for index, (job_id, item) in enumerate(zip(job_ids, items, strict=True))
    )
    batch_store.insert_jobs(
        session,
        batch_id=batch_id,
        priority=Priority.BATCH.value,
        now=now,
        deadline=now + timedelta(seconds=options.deadline_s),
        jobs=jobs,
        tenant=owner.tenant,
        key_id=owner.key_id,
    )
    return job_ids


# --- dispatch -----------------------------------------------------------------------------------


def nudge(job_ids: Sequence[uuid.UUID]) -> int:
    """Wake the dispatcher for a fresh batch: it moves the jobs into the broker as the fleet's
    limits allow (one message, however large the batch). Returns how many jobs wait."""
    ports.current().wake_dispatcher(force=True)
    return len(job_ids)


# --- reading ------------------------------------------------------------------------------------


def batch_status(batch_id: uuid.UUID) -> dict[str, Any]:
    """Counts by state, progress, throughput and ETA of a batch, as JSON-ready data."""
    with session_scope() as session:
        batch = batch_store.get_batch(session, batch_id)
        if batch is None:
            raise BatchNotFound(f"no batch with id {batch_id}")
        return batch_view(session, batch)


def batch_view(session: Session, batch: Batch) -> dict[str, Any]:
    now = datetime.now(UTC)
    counts = batch_store.counts(
        session, batch_id=batch.id, since=now - timedelta(seconds=RATE_WINDOW_S)
    )
    return views.batch_resource(batch, counts, now) | {
        "tenant": batch.tenant,
        "max_spend": None if batch.max_spend is None else tenancy.from_micros(batch.max_spend),
        "spend": spend.batch_spend(session, batch.id),
    }


def manifest(batch_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    """The batch's manifest, one dict per job in submission order; raises at once when the
    batch does not exist, then streams page by page (no long-lived transaction)."""
    with session_scope() as session:
        if batch_store.get_batch(session, batch_id) is None:
            raise BatchNotFound(f"no batch with id {batch_id}")
    return _manifest_pages(batch_id)


def _manifest_pages(batch_id: uuid.UUID) -> Iterator[dict[str, Any]]:
    after = -1
    while True:
        with session_scope() as session:
            jobs = batch_store.manifest_page(
                session, batch_id=batch_id, after_index=after, limit=_MANIFEST_PAGE
            )
            images = batch_store.images_of(session, [job.id for job in jobs])
        if not jobs:
            return
        for job in jobs:
            yield views.manifest_line(job, images[job.id])
        after = jobs[-1].batch_index or 0


def parse_batch_id(value: str) -> uuid.UUID:
    """A batch id as typed: the full UUID or a unique prefix (``service.ids``)."""
    return resolve_batch_id(value)
