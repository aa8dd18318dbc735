"""Who may still call: dashboard sessions signed out before they expired, and failed
authentication attempts per client address.

Both tables stay small: a row is useless once its ``expires_at`` has passed (the session would
have expired anyway; the address's window is over) and is deleted by the next write to its table.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime


class RevokedSession(Base):
    """A dashboard session ended by signing out: its cookie is refused until it would expire."""

    __tablename__ = "revoked_sessions"
    __table_args__ = (Index("ix_revoked_sessions_expires_at", "expires_at"),)

    #: The random id the session cookie carries (never the API token).
    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuthFailure(Base):
    """Failed sign-ins and bearer tokens of one client address, in the current window."""

    __tablename__ = "auth_failures"
    __table_args__ = (Index("ix_auth_failures_expires_at", "expires_at"),)

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: The end of the window: afterwards the row counts for nothing.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
