"""Fleet-wide singletons: one dispatch cycle, one reconciler pass at a time."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session


def try_singleton_lock(session: Session, name: str) -> bool:
    """Take a transaction-scoped lock so only one holder of ``name`` (a reconciler pass, a
    dispatch cycle) runs at a time across the fleet (Postgres)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    key = int.from_bytes(digest, "big", signed=True)
    return bool(session.scalar(select(func.pg_try_advisory_xact_lock(key))))
