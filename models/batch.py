"""Batches: many jobs submitted together, tracked to completion in Postgres.

Counts by state are derived from the job rows; the batch only records what cannot be derived:
its size, options and the moment it completed. ``completed_at`` is set once, by a guarded
``UPDATE ... WHERE completed_at IS NULL`` that also requires every job to be terminal, so the
completion (and its webhook) happens exactly once even when the last jobs finish concurrently.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from models.base import JSONB_OR_JSON, Base, UTCDateTime, utcnow


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        CheckConstraint("total >= 1", name="total"),
        # the dashboard's batch list, newest first
        Index("ix_batches_created_at", "created_at"),
        Index(
            "ix_batches_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    #: A label chosen by the submitter (file name, pipeline run), shown in status and events.
    name: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    #: Digest of the submitted jobs and options: a replay with the same key must match it.
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    total: Mapped[int] = mapped_column(Integer)
    callback_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The producer's free-form JSON object; batch items' own metadata is merged over it.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB_OR_JSON)
    #: Set when retention starts deleting the batch: from then on it is gone to every reader
    #: (404, never a partial count) while its jobs are deleted in bounded transactions.
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Who submitted it, and the most it may spend (micro-units; NULL: no limit of its own).
    tenant: Mapped[str] = mapped_column(String(63), default="default", server_default="default")
    key_id: Mapped[str | None] = mapped_column(String(32))
    max_spend: Mapped[int | None] = mapped_column(BigInteger)
