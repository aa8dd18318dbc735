"""Bearer-token authentication: the tenants' keys (``service.keys``) and the tokens of
``IMAGEGEN_API_TOKENS`` (comma-separated, each at least 32 characters: shorter ones stop every
process at start), which are admin keys of the ``default`` tenant. ``scoped(scope)`` answers
403 naming the scope a key lacks.

Every configured token is compared in constant time (``hmac.compare_digest``), and all of them
are compared whatever matches first, so timing tells nothing about which prefix was right. With
no token configured every call is refused: an API without tokens is never open by accident.
A wrong token is counted against the client's address (``service.access``): past the limit its
failed attempts are answered 429 with ``Retry-After``; a valid token is never slowed.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from worker.core.tenancy import Principal, Scope
from worker.service import access, keys

bearer = HTTPBearer(auto_error=False, description="A token from IMAGEGEN_API_TOKENS")


class TooManyAttempts(ApiError):
    """Too many failed authentications from this address: 429, with ``Retry-After``."""

    def __init__(self, retry_after_s: float) -> None:
        wait = math.ceil(retry_after_s)
        super().__init__(
            429,
            "too_many_attempts",
            f"too many failed authentications from this address; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def token_matches(given: bytes, accepted: list[bytes]) -> bool:
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(given, token)
    return matched


def client_address(request: Request) -> str:
    """The address failed attempts are counted against (the proxy's client, behind one)."""
    return (request.client.host if request.client else "unknown")[:64]


def count_failure(request: Request) -> None:
    """Record a wrong credential; raise :class:`TooManyAttempts` past the limit."""
    retry_after_s = access.failed_attempt(client_address(request))
    if retry_after_s is not None:
        raise TooManyAttempts(retry_after_s)


def require_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    """FastAPI dependency: the caller (tenant, key, scopes), or 401 unless the request carries
    a valid bearer token (429 instead once its address has sent too many wrong ones)."""
    given = credentials.credentials if credentials else ""
    principal = keys.authenticate(given) if given else None
    if principal is not None:
        request.state.principal = principal
        return principal
    if given:  # a call without any credential guesses nothing: it is not counted
        count_failure(request)
    raise ApiError(
        401,
        "unauthorized",
        "a valid bearer token is required",
        headers={"WWW-Authenticate": "Bearer"},
    )


def scoped(scope: Scope) -> Callable[[Principal], Principal]:
    """A dependency: the caller, or 403 naming ``scope`` when its key does not have it."""

    def dependency(principal: Principal = Depends(require_token)) -> Principal:
        if not principal.can(scope):
            raise missing_scope(scope)
        return principal

    return dependency


def missing_scope(scope: Scope) -> ApiError:
    return ApiError(403, "forbidden", f"this key lacks the {scope.value!r} scope")
