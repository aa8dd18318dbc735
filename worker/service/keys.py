"""API keys: create (the secret shown once), list, revoke, and who a bearer token is.

A key is ``igk_<id>_<secret>``: the id finds the row, and the SHA-256 of the whole key is
compared with the stored one in constant time. The secret is 256 random bits, so a fast hash
is enough (no password stretching: there is nothing to guess). Tokens of
``IMAGEGEN_API_TOKENS`` stay valid as admin keys of the ``default`` tenant and are checked
first, without touching the database, as before.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime
from typing import Any

from models import ApiKey
from models.base import utcnow
from worker.core.errors import BadInput, BatchNotFound, ImagegenError, JobNotFound
from worker.core.settings import get_settings
from worker.core.tenancy import (
    DEFAULT_TENANT,
    Principal,
    Scope,
    check_tenant,
    parse_expiry,
    parse_scopes,
)
from worker.core.timespec import iso
from worker.db.engine import session_scope
from worker.store import batches as batch_store
from worker.store import tenants

PREFIX = "igk_"
#: ``k_`` and 12 hex digits (the secret after it may hold ``_`` too).
ID_CHARS = 14


class KeyNotFound(BadInput):
    """No key with this id."""

    code = "not_found"

    def __init__(self, key_id: str) -> None:
        super().__init__([("id", f"no key with id {key_id!r}")])


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(*, tenant: str, scopes: str, expires: str | None = None) -> dict[str, Any]:
    """A new key of ``tenant`` (created if new): the only time its secret is returned."""
    problems: list[tuple[str, str]] = []
    now = utcnow()
    expires_at: datetime | None = None
    try:
        check_tenant(tenant)
    except ValueError as exc:
        problems.append(("tenant", str(exc)))
    try:
        granted = parse_scopes(scopes)
    except ValueError as exc:
        problems.append(("scopes", str(exc)))
    try:
        expires_at = parse_expiry(expires, now) if expires else None
    except BadInput as exc:
        problems += exc.problems
    if problems:
        raise BadInput(problems)
    key_id = "k_" + secrets.token_hex(6)
    secret = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    names = ",".join(scope.value for scope in Scope if scope in granted)
    with session_scope() as session:
        tenants.ensure_tenant(session, tenant)
        tenants.insert_key(
            session,
            key=ApiKey(
                id=key_id,
                tenant=tenant,
                scopes=names,
                secret_sha256=_digest(secret),
                created_at=now,
                expires_at=expires_at,
            ),
        )
    return {
        "id": key_id,
        "key": secret,
        "tenant": tenant,
        "scopes": names.split(","),
        "expires_at": iso(expires_at),
    }


def list_keys(*, tenant: str | None = None) -> list[dict[str, Any]]:
    """Every key (never a secret), oldest first."""
    now = utcnow()
    with session_scope() as session:
        return [_view(key, now) for key in tenants.list_keys(session, tenant=tenant)]


def _view(key: ApiKey, now: datetime) -> dict[str, Any]:
    expired = key.expires_at is not None and key.expires_at <= now
    return {
        "id": key.id,
        "tenant": key.tenant,
        "scopes": key.scopes.split(","),
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at),
        "active": key.revoked_at is None and not expired,
    }


def revoke(key_id: str) -> dict[str, Any]:
    """Revoke a key at once, on every API process (the next call with it is 401)."""
    now = utcnow()
    with session_scope() as session:
        if not tenants.revoke_key(session, key_id=key_id, at=now):
            raise KeyNotFound(key_id)
        key = tenants.get_key(session, key_id)
        assert key is not None
        return _view(key, now)


def env_principal(token: bytes) -> Principal | None:
    """An ``IMAGEGEN_API_TOKENS`` token: every one compared, whichever matches."""
    matched: bytes | None = None
    for accepted in get_settings().api_token_list:
        if hmac.compare_digest(token, accepted):
            matched = accepted
    if matched is None:
        return None
    key_id = "env:" + hashlib.sha256(matched).hexdigest()[:8]
    return Principal(DEFAULT_TENANT, key_id, frozenset(Scope))


def authenticate(token: str) -> Principal | None:
    """The caller behind a bearer token, or None (unknown, wrong, revoked or expired)."""
    principal = env_principal(token.encode())
    if principal is not None or not token.startswith(PREFIX):
        return principal
    rest = token[len(PREFIX) :]
    key_id = rest[:ID_CHARS]
    if rest[ID_CHARS : ID_CHARS + 1] != "_":
        return None
    with session_scope() as session:
        key = tenants.get_key(session, key_id)
        if key is None:
            return None
        valid = hmac.compare_digest(_digest(token), key.secret_sha256)
        if not valid or key.revoked_at is not None:
            return None
        if key.expires_at is not None and key.expires_at <= utcnow():
            return None
        return Principal(key.tenant, key.id, parse_scopes(key.scopes))


def principal_of_key(key_id: str) -> Principal | None:
    """A still-valid key by id (a dashboard session signed in with it)."""
    with session_scope() as session:
        key = tenants.get_key(session, key_id)
        if key is None or key.revoked_at is not None:
            return None
        if key.expires_at is not None and key.expires_at <= utcnow():
            return None
        return Principal(key.tenant, key.id, parse_scopes(key.scopes))


def owner_of_job(job_id: uuid.UUID) -> str:
    """The tenant of a job (JobNotFound when there is none)."""
    with session_scope() as session:
        tenant = tenants.job_tenant(session, job_id)
    if tenant is None:
        raise JobNotFound(f"no job with id {job_id}")
    return tenant


def owner_of_batch(batch_id: uuid.UUID) -> str:
    """The tenant of a batch (BatchNotFound when there is none, or retention is deleting it)."""
    with session_scope() as session:
        batch = batch_store.get_batch(session, batch_id)
        if batch is None:
            raise BatchNotFound(f"no batch with id {batch_id}")
        return batch.tenant


def check_sees(principal: Principal, tenant: str, missing: ImagegenError) -> None:
    """Raise ``missing`` (a not-found error) unless ``principal`` may see ``tenant``'s work:
    another tenant's job or batch is answered as if it did not exist."""
    if not principal.sees(tenant):
        raise missing
