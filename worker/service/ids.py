"""Ids as people type them, resolved: a full id, or a unique prefix of 8 or more characters.

Used wherever an id is accepted (the API's paths, the CLI, the dashboard's lookup): a prefix
naming one job (or batch) is that one; several raise :class:`AmbiguousId` listing them (409,
CLI exit 2); none raise not found (404, exit 1). Text that is no id at all is bad input.
"""

from __future__ import annotations

import uuid

from models import Batch, Job
from worker.core.errors import AmbiguousId, BadInput, BatchNotFound, JobNotFound
from worker.core.ids import MAX_CANDIDATES, MIN_PREFIX, id_range
from worker.db.engine import session_scope
from worker.store import ids


def resolve_job_id(
    value: str | uuid.UUID, *, field: str = "job_id", tenant: str | None = None
) -> uuid.UUID:
    """The job ``value`` names; a full UUID is returned as it is (not looked up). With
    ``tenant``, a prefix is looked up among that tenant's jobs only (a caller never learns
    another tenant's ids from the candidates)."""
    return _resolve(value, field, Job, "job", tenant)


def resolve_batch_id(
    value: str | uuid.UUID, *, field: str = "batch_id", tenant: str | None = None
) -> uuid.UUID:
    """The batch ``value`` names; a full UUID is returned as it is (not looked up)."""
    return _resolve(value, field, Batch, "batch", tenant)


def resolve_any(value: str) -> tuple[str, uuid.UUID] | None:
    """``("jobs", id)`` or ``("batches", id)`` for the dashboard's id box; None for none."""
    for kind, resolve in (("jobs", resolve_job_id), ("batches", resolve_batch_id)):
        try:
            found = resolve(value, field="id")
        except (JobNotFound, BatchNotFound):
            continue
        if _exists(kind, found):
            return kind, found
    return None


def _exists(kind: str, found: uuid.UUID) -> bool:
    model = Job if kind == "jobs" else Batch
    with session_scope() as session:
        return bool(ids.ids_between(session, kind=model, low=found, high=found, limit=1))


def _resolve(
    value: str | uuid.UUID,
    field: str,
    model: type[Job] | type[Batch],
    noun: str,
    tenant: str | None = None,
) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    bounds = id_range(value)
    if bounds is None:
        rule = f"must be a {noun} id (a UUID, or its first {MIN_PREFIX} or more characters)"
        raise BadInput([(field, rule)])
    low, high = bounds
    if low == high:
        return low
    with session_scope() as session:
        found = ids.ids_between(
            session, kind=model, low=low, high=high, limit=MAX_CANDIDATES, tenant=tenant
        )
    if not found:
        error = JobNotFound if model is Job else BatchNotFound
        raise error(f"no {noun} with an id starting with {value.strip()}")
    if len(found) > 1:
        raise AmbiguousId(field, value.strip(), [str(candidate) for candidate in found])
    return found[0]
