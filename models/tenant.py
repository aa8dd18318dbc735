"""Tenants, their API keys, and what they spend.

Money is stored as integer micro-units (``worker.core.tenancy``): exact sums, exact guards.
``spend_counters`` hold one row per (scope, period): a tenant's UTC day and month, a batch's
whole life. A submit claim reserves a job's price on its rows with a guarded
``UPDATE ... WHERE charged + possible + reserved + price <= budget``; the end of the submit
turns the reservation into a charge (the provider accepted it), a possible charge (ambiguous)
or nothing (a definite refusal). ``charges`` is the ledger the reports add up.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, UTCDateTime, utcnow


class Tenant(Base):
    """A producer of work: its budgets and its share of the fleet."""

    __tablename__ = "tenants"
    __table_args__ = (
        CheckConstraint("weight > 0", name="weight"),
        CheckConstraint("max_in_flight IS NULL OR max_in_flight >= 0", name="max_in_flight"),
        CheckConstraint("submit_rate IS NULL OR submit_rate > 0", name="submit_rate"),
    )

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    #: Budgets in micro-units per UTC day and month; NULL: no limit.
    daily_budget: Mapped[int | None] = mapped_column(BigInteger)
    monthly_budget: Mapped[int | None] = mapped_column(BigInteger)
    #: Its share of the fleet's submissions against other tenants with queued work.
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    #: Most predictions of this tenant at the provider at once; NULL: the fleet's limit only.
    max_in_flight: Mapped[int | None] = mapped_column(Integer)
    #: Most submissions per second (burst: one second's worth); NULL: the fleet's rate only.
    #: ``rate_tokens`` (NULL: full) and ``rate_tokens_at`` are its bucket, taken under the
    #: fleet's lock like the fleet's own.
    submit_rate: Mapped[float | None] = mapped_column(Float)
    rate_tokens: Mapped[float | None] = mapped_column(Float)
    rate_tokens_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """A scoped key of a tenant. Only the SHA-256 of the secret is kept: keys are 256-bit
    random strings, so a fast hash cannot be reversed or guessed."""

    __tablename__ = "api_keys"

    #: Public id, also the secret's prefix (``igk_<id>_<secret>``): how a key is looked up.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63), ForeignKey("tenants.name"))
    #: Comma-separated scopes (``read,produce``).
    scopes: Mapped[str] = mapped_column(String(64))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SpendCounter(Base):
    """Money charged, possibly charged and reserved in one scope and period."""

    __tablename__ = "spend_counters"
    __table_args__ = (
        CheckConstraint("charged >= 0 AND possible >= 0 AND reserved >= 0", name="amounts"),
    )

    #: ``tenant:<name>`` or ``batch:<id>``.
    scope: Mapped[str] = mapped_column(String(80), primary_key=True)
    #: ``day:YYYY-MM-DD``, ``month:YYYY-MM`` (UTC) or ``all``.
    period: Mapped[str] = mapped_column(String(16), primary_key=True)
    charged: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_count: Mapped[int] = mapped_column(Integer, default=0)
    possible: Mapped[int] = mapped_column(BigInteger, default=0)
    possible_count: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The 80 % warning was raised for this period (once).
    warned: Mapped[bool] = mapped_column(Boolean, default=False)


class Charge(Base):
    """One accepted (``charged``) or ambiguous (``possible``) submission: the spend ledger."""

    __tablename__ = "charges"
    __table_args__ = (
        CheckConstraint("kind IN ('charged', 'possible')", name="kind"),
        Index("ix_charges_tenant_at", "tenant", "at"),
        Index("ix_charges_batch_id", "batch_id"),
        Index("ix_charges_job_id", "job_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # no foreign key: the ledger outlives pruned jobs
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    batch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    tenant: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: What the reservation held: ``{"amount": micros, "counters": [[scope, period], ...]}``.
    detail: Mapped[dict[str, object] | None] = mapped_column(JSON)
