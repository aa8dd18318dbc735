"""Listings for producers and scripts: jobs and batches newest first, filtered, page by page.

``GET /v1/jobs``, ``GET /v1/batches`` and ``imagegen batch list`` call these. Each answers
``{"items": [...], "next_cursor": ...}``: ``next_cursor`` is None on the last page, else the
opaque value that asks for the next one (``core.cursor``). Items are the API's resources
(``views.job_resource`` with presigned links, ``views.batch_resource`` with counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.core import cursor
from worker.core.errors import BadInput
from worker.core.metadata import parse_filters
from worker.core.progress import RATE_WINDOW_S
from worker.core.states import STATUSES
from worker.db.engine import session_scope
from worker.service import views
from worker.store import batches as batch_store
from worker.store import listing
from worker.store.listing import JobFilter

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadInput([("limit", f"must be 1 to {MAX_LIMIT}")])
    return limit


def job_filter(
    *,
    statuses: list[str] | tuple[str, ...] = (),
    metadata: Mapping[str, str] | None = None,
    **given: Any,
) -> JobFilter:
    """A validated filter: known statuses, storable texts, well-formed metadata keys."""
    unknown = sorted(set(statuses) - set(STATUSES))
    if unknown:
        rule = f"unknown {', '.join(unknown)}; one of {', '.join(STATUSES)}"
        raise BadInput([("status", rule)])
    return JobFilter(statuses=tuple(statuses), metadata=parse_filters(metadata or {}), **given)


def list_jobs(
    where: JobFilter, *, limit: int = DEFAULT_LIMIT, after: str | None = None, links: Any = None
) -> dict[str, Any]:
    """One page of jobs matching ``where``, newest first, after the cursor ``after``."""
    check_limit(limit)
    before = cursor.decode(after)
    with session_scope() as session:
        found = listing.jobs_page(session, where=where, before=before, limit=limit + 1)
        page = found[:limit]
        images = batch_store.images_of(session, [job.id for job in page])
        items = [views.job_resource(job, images[job.id], links) for job in page]
    last = page[-1] if len(found) > limit else None
    return {
        "items": items,
        "next_cursor": cursor.encode(last.created_at, last.id) if last else None,
    }


def list_batches(
    *,
    metadata: Mapping[str, str] | None = None,
    limit: int = DEFAULT_LIMIT,
    after: str | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """One page of batches (``tenant``'s, if given), newest first, each as
    ``GET /v1/batches/{id}`` shows it."""
    check_limit(limit)
    before = cursor.decode(after)
    filters = parse_filters(metadata or {})
    now = datetime.now(UTC)
    with session_scope() as session:
        found = listing.batches_page(
            session, metadata=filters, before=before, limit=limit + 1, tenant=tenant
        )
        page = found[:limit]
        since = now - timedelta(seconds=RATE_WINDOW_S)
        items = [
            views.batch_resource(
                batch, batch_store.counts(session, batch_id=batch.id, since=since), now
            )
            for batch in page
        ]
    last = page[-1] if len(found) > limit else None
    return {
        "items": items,
        "next_cursor": cursor.encode(last.created_at, last.id) if last else None,
    }


def parse_time(value: str | None, field: str) -> datetime | None:
    """An ISO 8601 time of a filter (a time without a zone is UTC)."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput([(field, "must be an ISO 8601 time, e.g. 2026-12-01T00:00:00Z")]) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
