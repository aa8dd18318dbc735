"""The SQL of short ids: which jobs or batches an id prefix names (``core.ids``).

One range scan of the primary key's index between the prefix's lowest and highest completion.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Batch, Job


def ids_between(
    session: Session,
    *,
    kind: type[Job] | type[Batch],
    low: uuid.UUID,
    high: uuid.UUID,
    limit: int,
    tenant: str | None = None,
) -> list[uuid.UUID]:
    """Ids of ``kind`` (jobs or batches) from ``low`` to ``high``, at most ``limit`` (only
    ``tenant``'s, if given)."""
    query = select(kind.id).where(kind.id >= low, kind.id <= high).order_by(kind.id).limit(limit)
    if tenant is not None:
        query = query.where(kind.tenant == tenant)
    if kind is Batch:
        query = query.where(Batch.pruned_at.is_(None))
    return list(session.scalars(query))
