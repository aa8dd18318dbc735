"""The SQL of access control: revoked dashboard sessions and failed authentications.

Rows past their ``expires_at`` count for nothing; each write deletes them first (through the
``expires_at`` index), so neither table outgrows the sessions and windows still running.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import AuthFailure, RevokedSession


def _insert(session: Session) -> Callable[..., Any]:
    """The dialect's INSERT, the one with ON CONFLICT."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def revoke_session(
    session: Session, *, session_id: str, expires_at: datetime, now: datetime
) -> None:
    """Refuse the session ``session_id`` from now on (it expires at ``expires_at`` anyway)."""
    session.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
    statement = _insert(session)(RevokedSession).values(
        session_id=session_id, expires_at=expires_at
    )
    session.execute(statement.on_conflict_do_nothing(index_elements=["session_id"]))


def is_revoked(session: Session, *, session_id: str) -> bool:
    query = select(exists().where(RevokedSession.session_id == session_id))
    return bool(session.scalar(query))


def record_failure(
    session: Session, *, client: str, now: datetime, window: timedelta
) -> tuple[int, datetime]:
    """Count one failed attempt of ``client``: (failures in its window, end of the window).

    One statement, so concurrent failures of one address on several API processes all count.
    A window that has ended starts again with this failure."""
    session.execute(delete(AuthFailure).where(AuthFailure.expires_at < now))
    ended = AuthFailure.expires_at <= now
    statement = _insert(session)(AuthFailure).values(
        client=client, failures=1, window_started_at=now, expires_at=now + window
    )
    statement = statement.on_conflict_do_update(
        index_elements=["client"],
        set_={
            "failures": case((ended, 1), else_=AuthFailure.failures + 1),
            "window_started_at": case((ended, now), else_=AuthFailure.window_started_at),
            "expires_at": case((ended, now + window), else_=AuthFailure.expires_at),
        },
    ).returning(AuthFailure.failures, AuthFailure.expires_at)
    failures, expires_at = session.execute(statement).one()
    return failures, expires_at
