"""The SQL of tenants and their keys: creation, lookup, revocation, budgets and weights."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import ApiKey, Batch, Job, Tenant
from models.base import utcnow
from worker.core.states import IN_FLIGHT
from worker.core.tenancy import RateState


def _insert(session: Session) -> Callable[..., Any]:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def ensure_tenant(session: Session, name: str) -> None:
    """Create the tenant with no budget and weight 1 if it does not exist."""
    now = utcnow()
    session.execute(
        _insert(session)(Tenant)
        .values(name=name, weight=1.0, created_at=now, updated_at=now)
        .on_conflict_do_nothing()
    )


def get_tenant(session: Session, name: str) -> Tenant | None:
    return session.get(Tenant, name)


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.name)))


def update_tenant(session: Session, name: str, values: dict[str, Any]) -> None:
    session.execute(update(Tenant).where(Tenant.name == name).values(updated_at=utcnow(), **values))


def weights(session: Session) -> dict[str, float]:
    return {row.name: row.weight for row in session.execute(select(Tenant.name, Tenant.weight))}


# --- keys ---------------------------------------------------------------------------------------


def insert_key(session: Session, *, key: ApiKey) -> None:
    session.add(key)
    session.flush()


def get_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_keys(session: Session, *, tenant: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant is not None:
        query = query.where(ApiKey.tenant == tenant)
    return list(session.scalars(query))


def revoke_key(session: Session, *, key_id: str, at: datetime) -> bool:
    """Revoke a key (a revoked one stays revoked at its first time); False if unknown."""
    key = session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        return False
    if key.revoked_at is None:
        key.revoked_at = at
    return True


# --- in flight ----------------------------------------------------------------------------------


def in_flight(session: Session, tenant: str) -> int:
    """The tenant's predictions at the provider (submitting + running)."""
    query = select(func.count()).where(Job.tenant == tenant, Job.status.in_(IN_FLIGHT))
    return int(session.scalar(query) or 0)


def rooms(session: Session, *, now: datetime, horizon_s: float) -> dict[str, int]:
    """Tenants with a cap or a submit rate: how many submissions each may make within
    ``horizon_s`` (the dispatcher's cycle), by its in-flight cap and its rate."""
    found = in_flight_room(session)
    rated = session.execute(
        select(Tenant.name, Tenant.submit_rate, Tenant.rate_tokens, Tenant.rate_tokens_at).where(
            Tenant.submit_rate.is_not(None)
        )
    )
    for name, rate, tokens, tokens_at in rated:
        room = RateState(float(rate or 0), tokens, tokens_at).room(now, horizon_s)
        found[name] = min(found.get(name, room), room)
    return found


def rate_state(tenant: Tenant) -> RateState | None:
    if tenant.submit_rate is None:
        return None
    return RateState(tenant.submit_rate, tenant.rate_tokens, tenant.rate_tokens_at)


def take_rate_token(session: Session, *, tenant: str, tokens: float, at: datetime) -> None:
    """Record a submission's token of the tenant's own bucket (under the fleet's lock)."""
    session.execute(
        update(Tenant).where(Tenant.name == tenant).values(rate_tokens=tokens, rate_tokens_at=at)
    )


def in_flight_room(session: Session) -> dict[str, int]:
    """Capped tenants: how many more predictions each may have out (0 when at its cap)."""
    caps = {
        row.name: row.max_in_flight
        for row in session.execute(
            select(Tenant.name, Tenant.max_in_flight).where(Tenant.max_in_flight.is_not(None))
        )
    }
    if not caps:
        return {}
    query = (
        select(Job.tenant, func.count().label("n"))
        .where(Job.tenant.in_(list(caps)), Job.status.in_(IN_FLIGHT))
        .group_by(Job.tenant)
    )
    counts = {row.tenant: int(row.n) for row in session.execute(query)}
    return {name: max(0, int(cap or 0) - counts.get(name, 0)) for name, cap in caps.items()}


def batch_tenants(session: Session, batch_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The tenant of each batch, in the order given."""
    if not batch_ids:
        return {}
    query = select(Batch.id, Batch.tenant).where(Batch.id.in_(batch_ids))
    found = {row.id: row.tenant for row in session.execute(query)}
    return {batch_id: found[batch_id] for batch_id in batch_ids if batch_id in found}


def job_tenant(session: Session, job_id: uuid.UUID) -> str | None:
    return session.scalar(select(Job.tenant).where(Job.id == job_id))
