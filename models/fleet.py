"""Fleet-wide control state: one row per bucket (``submit``, ``poll``) that every worker shares.

The ``submit`` row holds the submission token bucket, the adaptive rate, the 429 cool-down, the
pause (by the provider's 401/403 or an operator) and the circuit breaker; the ``poll`` row holds
the poll bucket and its cool-down. Claims lock the ``submit`` row, so the in-flight count they
check and the token they take are exact across every worker on every host.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime

BUCKETS = ("submit", "poll")


class FleetControl(Base):
    __tablename__ = "fleet_controls"
    __table_args__ = (
        CheckConstraint("breaker IN ('closed', 'open')", name="breaker"),
        CheckConstraint("rate_factor > 0 AND rate_factor <= 1", name="rate_factor"),
    )

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float, default=0.0)
    tokens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rate_factor: Mapped[float] = mapped_column(Float, default=1.0)
    rate_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cooldown_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    strikes: Mapped[int] = mapped_column(Integer, default=0)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    #: ``auth`` (401), ``balance`` or ``permission`` (403), ``manual`` (an operator).
    pause_code: Mapped[str | None] = mapped_column(String(32))
    pause_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_by: Mapped[str | None] = mapped_column(String(200))
    breaker: Mapped[str] = mapped_column(String(16), default="closed")
    breaker_failures: Mapped[int] = mapped_column(Integer, default=0)
    breaker_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    breaker_reason: Mapped[str | None] = mapped_column(Text)
    probe_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When a dispatch cycle last ran (``submit`` row): shows whether ``imagegen beat`` runs.
    dispatcher_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
