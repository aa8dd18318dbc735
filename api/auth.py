"""Bearer-token authentication: tokens from ``IMAGEGEN_API_TOKENS`` (comma-separated).

Every configured token is compared in constant time (``hmac.compare_digest``), and all of them
are compared whatever matches first, so timing tells nothing about which prefix was right. With
no token configured every call is refused: an API without tokens is never open by accident.
"""

from __future__ import annotations

import hmac

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from worker.core.settings import get_settings

bearer = HTTPBearer(auto_error=False, description="A token from IMAGEGEN_API_TOKENS")


def token_matches(given: bytes, accepted: list[bytes]) -> bool:
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(given, token)
    return matched


def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """FastAPI dependency: 401 unless the request carries a valid bearer token."""
    given = credentials.credentials.encode() if credentials else b""
    if not given or not token_matches(given, get_settings().api_token_list):
        raise ApiError(
            401,
            "unauthorized",
            "a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
