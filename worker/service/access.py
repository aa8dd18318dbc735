"""Access control shared by every API process: signed-out dashboard sessions and the limit on
failed authentications per client address, both kept in the database.

Why the database and not Redis: it is the one store every mode has (the embedded mode has no
Redis), every API process already talks to it, and a failed attempt is rare enough that one
small upsert costs nothing worth saving. Only failures are counted: a request with a valid token
is never looked up, counted or slowed, so an attacker sharing an address with a real caller
(a NAT, a proxy) cannot lock that caller out. After ``IMAGEGEN_AUTH_MAX_FAILURES`` failures in
``IMAGEGEN_AUTH_FAILURE_WINDOW_S`` an address's failed attempts are answered 429 with
``Retry-After`` until its window ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from models.base import utcnow
from worker.core.settings import get_settings
from worker.db.engine import session_scope
from worker.store import access


def failed_attempt(client: str) -> float | None:
    """Record a failed authentication of ``client``: None while it is within the limit, else
    the seconds until its window ends (answered as ``Retry-After``)."""
    settings = get_settings()
    if settings.auth_max_failures == 0:
        return None
    now = utcnow()
    window = timedelta(seconds=settings.auth_failure_window_s)
    with session_scope() as session:
        failures, ends_at = access.record_failure(session, client=client, now=now, window=window)
    if failures <= settings.auth_max_failures:
        return None
    return max((ends_at - now).total_seconds(), 1.0)


def end_session(session_id: str, *, expires_at: datetime) -> None:
    """Sign a dashboard session out on every API process, until it would have expired."""
    with session_scope() as session:
        access.revoke_session(session, session_id=session_id, expires_at=expires_at, now=utcnow())


def session_ended(session_id: str) -> bool:
    with session_scope() as session:
        return access.is_revoked(session, session_id=session_id)
