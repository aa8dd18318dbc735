"""The SQL of listings: jobs and batches newest first, filtered, page by page by keyset.

Pages follow (created_at, id) downwards (``ix_jobs_created_at_id``, ``ix_batches_created_at``),
never OFFSET, so page 1,000 costs what page 1 costs. ``metadata.KEY=VALUE`` filters are
containment tests (``metadata @> '{"KEY": VALUE}'``) that the GIN index (``jsonb_path_ops``)
answers on Postgres; elsewhere (SQLite) a JSON extract per row.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, or_, select, tuple_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import InstrumentedAttribute, Session

from models import Batch, Job
from worker.core.metadata import filter_values


@dataclass(frozen=True)
class JobFilter:
    """What ``GET /v1/jobs`` may filter on (every given condition must hold)."""

    statuses: Sequence[str] = ()
    batch_id: uuid.UUID | None = None
    ref: str | None = None
    error_code: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Only this tenant's jobs (a caller without the ``operate`` scope sees only its own).
    tenant: str | None = None


def jobs_page(
    session: Session, *, where: JobFilter, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Job]:
    """Up to ``limit`` jobs matching ``where``, newest first, older than the cursor."""
    conditions: list[ColumnElement[bool]] = []
    if where.statuses:
        conditions.append(Job.status.in_(list(where.statuses)))
    if where.batch_id is not None:
        conditions.append(Job.batch_id == where.batch_id)
    if where.tenant is not None:
        conditions.append(Job.tenant == where.tenant)
    if where.ref is not None:
        conditions.append(Job.ref == where.ref)
    if where.error_code is not None:
        conditions.append(Job.error_code == where.error_code)
    if where.created_after is not None:
        conditions.append(Job.created_at >= where.created_after)
    if where.created_before is not None:
        conditions.append(Job.created_at < where.created_before)
    conditions += _metadata_matches(session, Job.meta, where.metadata)
    query = select(Job).where(*conditions)
    return list(session.scalars(_page(query, Job, before, limit)))


def batches_page(
    session: Session,
    *,
    metadata: Mapping[str, str],
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
    tenant: str | None = None,
) -> list[Batch]:
    """Up to ``limit`` batches (not being pruned, ``tenant``'s if given), newest first, older
    than the cursor."""
    conditions = [Batch.pruned_at.is_(None), *_metadata_matches(session, Batch.meta, metadata)]
    if tenant is not None:
        conditions.append(Batch.tenant == tenant)
    query = select(Batch).where(*conditions)
    return list(session.scalars(_page(query, Batch, before, limit)))


def _page(
    query: Select[Any],
    kind: type[Job] | type[Batch],
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Select[Any]:
    if before is not None:
        query = query.where(tuple_(kind.created_at, kind.id) < tuple_(*before))
    return query.order_by(kind.created_at.desc(), kind.id.desc()).limit(limit)


def _metadata_matches(
    session: Session, column: InstrumentedAttribute[Any], filters: Mapping[str, str]
) -> list[ColumnElement[bool]]:
    """One condition per key: its value is the text given, or the JSON scalar it spells."""
    postgres = session.get_bind().dialect.name == "postgresql"
    conditions: list[ColumnElement[bool]] = []
    for key, text in filters.items():
        values = filter_values(text)
        if postgres:
            as_jsonb = type_coerce(column, JSONB)
            matches = [as_jsonb.contains({key: value}) for value in values]
        else:
            extracted = func.json_extract(column, f'$."{key}"')
            matches = [extracted == value for value in values if value is not None]
            if None in values:
                matches.append(func.json_type(column, f'$."{key}"') == "null")
        conditions.append(or_(false(), *matches))
    return conditions
