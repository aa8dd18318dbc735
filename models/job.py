"""The job table: one row per generation request, the source of truth for its progress."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import JSONB_OR_JSON, Base, UTCDateTime, utcnow

STATUSES = ("queued", "submitting", "running", "transferring", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "submitting", "running", "transferring")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", STATUSES), name="status"),
        CheckConstraint(_in("priority", ("interactive", "batch")), name="priority"),
        CheckConstraint(
            "attempts >= 0 AND poll_count >= 0 AND ambiguous_submits >= 0", name="counters"
        ),
        # what the reconciler and the dispatcher scan: active jobs by their next-action time
        Index(
            "ix_jobs_active_next",
            "status",
            "next_action_at",
            postgresql_where=text(_in("status", ACTIVE_STATUSES)),
            sqlite_where=text(_in("status", ACTIVE_STATUSES)),
        ),
        Index("ix_jobs_prediction_id", "prediction_id"),
        # newest first, page by page (``GET /v1/jobs``: keyset on both columns)
        Index("ix_jobs_created_at_id", "created_at", "id"),
        # ``metadata.KEY=VALUE`` filters: containment (@>) through a GIN index
        Index(
            "ix_jobs_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
        # a batch's jobs in submission order (manifest, counts); also indexes batch_id
        UniqueConstraint("batch_id", "batch_index"),
        # the dispatcher: due interactive jobs, loose batch-priority jobs, and the jobs it sent
        # that no worker picked up yet (a batch's queue: ix_jobs_batch_status)
        Index(
            "ix_jobs_queued",
            "priority",
            "next_action_at",
            postgresql_where=text("status = 'queued' AND batch_id IS NULL"),
            sqlite_where=text("status = 'queued' AND batch_id IS NULL"),
        ),
        Index(
            "ix_jobs_dispatched",
            "dispatched_at",
            postgresql_where=text("status = 'queued' AND dispatched_at IS NOT NULL"),
            sqlite_where=text("status = 'queued' AND dispatched_at IS NOT NULL"),
        ),
        # the dashboard: recent finishes by state and code; a batch's jobs by state in order
        # (its counts, its gallery, the dispatcher's next jobs of it, whether it is done)
        Index(
            "ix_jobs_finished_at",
            "finished_at",
            "status",
            "error_code",
            postgresql_where=text("finished_at IS NOT NULL"),
            sqlite_where=text("finished_at IS NOT NULL"),
        ),
        Index(
            "ix_jobs_batch_status",
            "batch_id",
            "status",
            "batch_index",
            postgresql_where=text("batch_id IS NOT NULL"),
            sqlite_where=text("batch_id IS NOT NULL"),
        ),
        # the dispatcher's share of each tenant's loose jobs
        Index(
            "ix_jobs_queued_tenant",
            "tenant",
            "priority",
            "next_action_at",
            postgresql_where=text("status = 'queued' AND batch_id IS NULL"),
            sqlite_where=text("status = 'queued' AND batch_id IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[str] = mapped_column(String(16), default="interactive")
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)

    # the request, as validated against the provider contract
    prompt: Mapped[str] = mapped_column(Text)
    images: Mapped[list[str] | None] = mapped_column(JSON)
    aspect_ratio: Mapped[str] = mapped_column(String(8))
    resolution: Mapped[str] = mapped_column(String(8))
    seed: Mapped[int | None] = mapped_column(Integer)

    # who asked: the batch and the line in it, the client's own reference, where to report
    batch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("batches.id"))
    batch_index: Mapped[int | None] = mapped_column(Integer)
    ref: Mapped[str | None] = mapped_column(String(200))
    callback_url: Mapped[str | None] = mapped_column(Text)
    #: W3C trace context of the span that enqueued the job (only when that process traces):
    #: every step's span starts from it, so a job is one trace (``worker.telemetry.tracing``).
    traceparent: Mapped[str | None] = mapped_column(String(55))
    #: The producer's own free-form JSON object (``core.metadata``): echoed, filterable. The
    #: attribute is ``meta`` (``metadata`` is the declarative base's), the column ``metadata``.
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB_OR_JSON)
    #: The tenant and key that enqueued it (``models.tenant``).
    tenant: Mapped[str] = mapped_column(String(63), default="default", server_default="default")
    key_id: Mapped[str | None] = mapped_column(String(32))
    #: The budget this submission holds while it is out (``store.spend``): set by the claim,
    #: cleared when the submit ends.
    reservation: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    # progress at the provider
    prediction_id: Mapped[str | None] = mapped_column(String(128))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    outputs: Mapped[list[str] | None] = mapped_column(JSON)
    nsfw: Mapped[list[bool] | None] = mapped_column(JSON)

    # counters
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    poll_errors: Mapped[int] = mapped_column(Integer, default=0)
    transfer_attempts: Mapped[int] = mapped_column(Integer, default=0)
    ambiguous_submits: Mapped[int] = mapped_column(Integer, default=0)

    # scheduling: when the next step is due, who holds the row, and until when
    next_action_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the dispatcher (or an enqueue) sent the submit message no worker has taken yet.
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)

    # outcome
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    generated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def request_fields(self) -> dict[str, Any]:
        """The generation request as it was enqueued (for display and provider calls)."""
        fields: dict[str, Any] = {
            "prompt": self.prompt,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
        }
        if self.images:
            fields["images"] = self.images
        if self.seed is not None:
            fields["seed"] = self.seed
        return fields
