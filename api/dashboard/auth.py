"""Who may see the dashboard: a session cookie from the sign-in page, or a bearer token.

Signing in checks a pasted API token exactly like ``/v1`` does (every token of
``IMAGEGEN_API_TOKENS`` compared in constant time, wrong ones counted against the address and
answered 429 past the limit) and answers with a session cookie: HttpOnly, ``SameSite=Strict``,
limited to ``/dashboard``, signed with a key derived from the configured tokens. The cookie holds
a random session id, a random CSRF token and a timestamp, never the API token. Signing out
records the session id as revoked in the database (``service.access``), so the old cookie is
refused by every API process, after restarts too, until it would have expired anyway; changing
``IMAGEGEN_API_TOKENS`` (revoking a token) ends every session. Forms carry the session's CSRF
token, and a POST whose ``Origin`` is another site is refused as well. Scripts may send
``Authorization: Bearer <token>`` instead of a cookie; such requests need no CSRF token (a
browser never adds that header by itself).

Tenants' keys (``service.keys``) sign in too; the session cookie then names the key, which is
checked again on every request (a revoked key's sessions end at once). The dashboard shows and
acts on every tenant's work, so it needs the ``operate`` scope (403 naming it otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from api.auth import count_failure
from worker.core.settings import get_settings
from worker.core.tenancy import DEFAULT_TENANT, Principal, Scope
from worker.service import access, keys

COOKIE = "imagegen_session"
COOKIE_PATH = "/dashboard"
#: A session lasts a working day; sign in again after that.
MAX_AGE_S = 12 * 3600
_KEY_LABEL = b"imagegen dashboard session v1"


#: A session signed in with an ``IMAGEGEN_API_TOKENS`` token: the default tenant's admin.
ENV_SESSION = Principal(DEFAULT_TENANT, "env", frozenset(Scope))


@dataclass(frozen=True)
class Viewer:
    """A signed-in request: its CSRF token (None for bearer requests, which need none) and,
    for a session cookie, the session's id and when it expires."""

    csrf: str | None
    via: str
    session_id: str | None = None
    expires_at: datetime | None = None
    #: Who signed in.
    principal: Principal = ENV_SESSION


class LoginRequired(Exception):
    """No valid session cookie or bearer token."""


class Forbidden(Exception):
    """A form without this session's CSRF token, or posted from another site."""


class MissingScope(Exception):
    """The signed-in key lacks a scope the dashboard needs."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(f"this key lacks the {scope.value!r} scope")
        self.scope = scope


def _serializer() -> URLSafeTimedSerializer | None:
    tokens = get_settings().api_token_list
    if not tokens:
        return None
    key = hmac.new(_KEY_LABEL, b"\n".join(sorted(tokens)), hashlib.sha256).digest()
    return URLSafeTimedSerializer(
        key, salt="dashboard-session", signer_kwargs={"digest_method": hashlib.sha256}
    )


def principal_of(token: str) -> Principal | None:
    """The same check as the ``/v1`` bearer tokens (env tokens in constant time, then keys)."""
    given = token.strip()
    return keys.authenticate(given) if given else None


def token_is_valid(token: str) -> bool:
    return principal_of(token) is not None


def new_session(principal: Principal | None = None) -> str:
    """A fresh session cookie value (raises LoginRequired when no token is configured); a
    tenant key's session names the key."""
    serializer = _serializer()
    if serializer is None:
        raise LoginRequired()
    data = {"sid": secrets.token_urlsafe(24), "csrf": secrets.token_urlsafe(32)}
    if principal is not None and principal.key_id.startswith("k_"):
        data["kid"] = principal.key_id
    return str(serializer.dumps(data))


def viewer_of(request: Request) -> Viewer | None:
    """The signed-in viewer of this request, if any (a wrong bearer token is counted)."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        principal = principal_of(credentials)
        if principal is not None:
            return Viewer(csrf=None, via="bearer", principal=principal)
        count_failure(request)
    return _session_of(request.cookies.get(COOKIE))


def _session_of(cookie: str | None) -> Viewer | None:
    serializer = _serializer()
    if not cookie or serializer is None:
        return None
    try:
        data, signed_at = serializer.loads(cookie, max_age=MAX_AGE_S, return_timestamp=True)
    except BadSignature:  # tampered, expired, or signed before the tokens changed
        return None
    if not isinstance(data, dict):
        return None
    csrf, session_id = data.get("csrf"), data.get("sid")
    if not (isinstance(csrf, str) and csrf and isinstance(session_id, str) and session_id):
        return None  # a cookie from before sessions had ids: sign in again
    if access.session_ended(session_id):
        return None
    expires_at = signed_at + timedelta(seconds=MAX_AGE_S)
    viewer = Viewer(csrf=csrf, via="cookie", session_id=session_id, expires_at=expires_at)
    key_id = data.get("kid")
    if isinstance(key_id, str):
        principal = keys.principal_of_key(key_id)
        if principal is None:  # revoked or expired since
            return None
        viewer = replace(viewer, principal=principal)
    return viewer


def require_viewer(request: Request) -> Viewer:
    """FastAPI dependency of every dashboard page and action."""
    viewer = viewer_of(request)
    if viewer is None:
        raise LoginRequired()
    if not viewer.principal.can(Scope.OPERATE):
        raise MissingScope(Scope.OPERATE)
    return viewer


def check_form(request: Request, viewer: Viewer, form: dict[str, str]) -> None:
    """Refuse a POST from another site, or one without this session's CSRF token."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden()
    if viewer.via == "bearer":
        return
    given = form.get("csrf", "")
    if not viewer.csrf or not hmac.compare_digest(given.encode(), viewer.csrf.encode()):
        raise Forbidden()


def login_url(request: Request) -> str:
    """The sign-in page, coming back to this page afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"{COOKIE_PATH}/login?next={quote(target, safe='')}"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path of this site only (no open redirect)."""
    if (
        target
        and target.startswith(COOKIE_PATH + "/")
        and not target.startswith("//")
        and "\\" not in target
        and not urlsplit(target).netloc
    ):
        return target
    return COOKIE_PATH + "/"
