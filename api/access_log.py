"""The API's access log: one ``http_request`` line per answered request (ASGI middleware).

Each line, in the format of every other log line (JSON for services), holds the method, the
path without its query string (a query could carry something secret), the status, the
duration, who called and the request id. Who called is a label that names a key without
revealing it: ``key_label`` set by the authentication on the request's state when it knows
one (the hook for named keys of tenants), else ``sha256:`` and the first 8 hex digits of the
bearer token's digest, stable across requests and rotations and useless for guessing it.

The request id is the caller's ``X-Request-ID`` when it is a short plain token, else a new
one; it is answered in ``X-Request-ID`` and kept in ``scope["state"]["request_id"]``.
Probes and scrapes (``/healthz``, ``/readyz``, ``/metrics``) are logged at DEBUG: one every
few seconds per prober would drown the rest.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("imagegen.access")

#: Paths logged at DEBUG.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


def key_label(authorization: str | None) -> str | None:
    """``sha256:xxxxxxxx`` for a bearer token (never the token), None without one."""
    found = _BEARER.match(authorization or "")
    if not found:
        return None
    return "sha256:" + hashlib.sha256(found.group(1).encode()).hexdigest()[:8]


def request_id(given: str | None) -> str:
    """The caller's request id when it is a short plain token, else a new one."""
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        rid = request_id(headers.get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = rid
        status = 500  # what the client gets when the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            _log(scope, headers, status, time.perf_counter() - started)


def _log(scope: Scope, headers: Headers, status: int, seconds: float) -> None:
    path = scope["path"]
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if status >= 500:
        level = logging.WARNING
    if not log.isEnabledFor(level):
        return
    state = scope.get("state") or {}
    client = scope.get("client")
    log.log(
        level,
        "http_request",
        extra={
            "method": scope["method"],
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "key": state.get("key_label") or key_label(headers.get("authorization")),
            "request_id": state["request_id"],
            "client": client[0] if client else None,
        },
    )
