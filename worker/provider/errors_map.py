"""Turn what went wrong on the wire into one error from :mod:`worker.core.errors`.

Three sources: an HTTP error response (its body parsed loosely, in any of the shapes the
provider and its gateways use), an HTTP 200 whose envelope carries an error instead of a
prediction, and a transport failure (where ``request_sent`` decides whether a submit is safe
to retry). Messages are short, name the HTTP status, and never carry the API key.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from worker.core.errors import (
    AuthenticationFailed,
    ContentPolicyViolation,
    InvalidRequest,
    PermissionDenied,
    PredictionNotFound,
    ProviderError,
    ProviderProtocolError,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnreachable,
    RateLimited,
)
from worker.provider.failures import mentions_content_policy
from worker.provider.redact import safe_text
from worker.provider.wire import prediction_fields

_BY_STATUS: dict[int, type[ProviderError]] = {
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: PredictionNotFound,
    # The server gave up waiting for the request: transient, like a gateway timeout.
    408: ProviderTimeout,
    429: RateLimited,
}
#: The provider documents content-policy refusals as error type "503", sent with HTTP 400.
_POLICY_KINDS = frozenset({"503", "1200"})
_MESSAGE_KEYS = ("message", "msg", "detail", "error_description", "error_message")
_HTML_START = re.compile(r"(?is)^\s*(<!doctype\s+html|<html|<head|<body|<\?xml)")
_HTML_TITLE = re.compile(r"(?is)<title[^>]*>(.*?)</title>")
_SECONDS = re.compile(r"\d+(\.\d+)?")
#: Transport failures that happen before a byte of the request can reach the provider.
_BEFORE_SENDING = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True)
class ErrorBody:
    """The useful parts of an error body: the message and the provider's type and code."""

    message: str | None = None
    type: str | None = None
    code: str | None = None

    def is_content_policy(self) -> bool:
        """True when the type/code or the wording says the content policy refused it."""
        kinds = {self.type, self.code} - {None}
        words = " ".join(filter(None, (self.message, self.type, self.code)))
        return bool(kinds & _POLICY_KINDS) or mentions_content_policy(words)

    def describe(self, secret: str | None = None, status: int | None = None) -> str:
        """``message (type X, code Y)``, scrubbed and shortened.

        Labels that repeat the message or the HTTP ``status`` are left out as noise.
        """
        noise = {None, self.message, str(status)}
        labels = [
            f"{name} {value}"
            for name, value in (("type", self.type), ("code", self.code))
            if value not in noise
        ]
        text = self.message or "no error message"
        return safe_text(text + (f" ({', '.join(labels)})" if labels else ""), secret)


# --- HTTP error responses -----------------------------------------------------------------------


def error_from_response(response: httpx.Response, *, secret: str | None = None) -> ProviderError:
    """The error an HTTP error response stands for (401, 403, 404, 429, 4xx, 5xx...).

    ``secret`` is scrubbed from the message in case the provider echoes it back.
    """
    status = response.status_code
    body = read_error_body(response)
    detail = body.describe(secret, status)
    message = f"provider answered HTTP {status} {response.reason_phrase}: {detail}"
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    return error_for_status(
        status, message, content_policy=body.is_content_policy(), retry_after_s=retry_after
    )


def error_for_status(
    status: int, message: str, *, content_policy: bool = False, retry_after_s: float | None = None
) -> ProviderError:
    """The error class for an HTTP status, instantiated with ``message``.

    ``retry_after_s`` is kept only where waiting helps (429 and 5xx).
    """
    cls = _error_class(status, content_policy)
    waits = cls in (RateLimited, ProviderServerError)
    return cls(message, status_code=status, retry_after_s=retry_after_s if waits else None)


def _error_class(status: int, content_policy: bool) -> type[ProviderError]:
    if status == 400:
        return ContentPolicyViolation if content_policy else InvalidRequest
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ProviderServerError
    if status >= 400:
        return InvalidRequest
    return ProviderProtocolError  # a redirect or informational answer was never expected


def read_error_body(response: httpx.Response) -> ErrorBody:
    """Parse an error body loosely: nested, OpenAI-style, bare string, top-level, HTML, empty."""
    if not response.content.strip():
        return ErrorBody()
    try:
        payload = json.loads(response.content)
    except ValueError:  # also covers bytes that are not UTF-8
        return _text_body(response.text, response.headers.get("Content-Type", ""))
    return _json_body(payload)


def _json_body(payload: object) -> ErrorBody:
    if not isinstance(payload, dict):
        return ErrorBody(message=_as_text(payload))
    error = payload.get("error")
    source = error if isinstance(error, dict) else payload
    message = _first_text(source, _MESSAGE_KEYS)
    if isinstance(error, str) and error.strip():
        # {"error": "text"}, sometimes next to a top-level message: keep both.
        message = f"{error}: {message}" if message and message != error else error
    return ErrorBody(
        message=message,
        type=_as_text(source.get("type")),
        code=_as_text(source.get("code", payload.get("code"))),
    )


def _text_body(text: str, content_type: str) -> ErrorBody:
    if "html" not in content_type.lower() and not _HTML_START.match(text):
        return ErrorBody(message=text.strip() or None)
    title = _HTML_TITLE.search(text)
    title_text = html.unescape(title[1]).strip() if title else ""
    return ErrorBody(
        message=f"HTML error page: {title_text[:100]}" if title_text else "HTML error page"
    )


def _first_text(source: dict[str, object], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        text = _as_text(source.get(key))
        if text:
            return text
    return None


def _as_text(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip() or None
    return json.dumps(value, default=str)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date).

    Anything unparseable is ignored (None); a date in the past means "now" (0).
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete formats may lose the zone
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --- HTTP 200 without a prediction --------------------------------------------------------------


def envelope_error(payload: object, *, secret: str | None = None) -> ProviderError | None:
    """The error a 200 answer carries when it holds no prediction; None when it holds one.

    Gateways sometimes answer 200 with ``{"code": 403, "message": ..., "data": null}``: an
    envelope code in 400-599 is mapped like that HTTP status (and becomes ``status_code``).
    """
    if prediction_fields(payload) is not None:
        return None
    body = _json_body(payload)
    code = _envelope_code(payload)
    if code is None:
        return ProviderProtocolError(
            f"provider answered HTTP 200 without a prediction: {body.describe(secret)}"
        )
    message = f"provider answered HTTP 200 with error code {code}: {body.describe(secret, code)}"
    return error_for_status(code, message, content_policy=body.is_content_policy())


def _envelope_code(payload: object) -> int | None:
    code = payload.get("code") if isinstance(payload, dict) else None
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    return code if isinstance(code, int) and 400 <= code < 600 else None


# --- transport failures -------------------------------------------------------------------------


def error_from_transport(exc: httpx.RequestError, *, secret: str | None = None) -> ProviderError:
    """The error a failed exchange stands for; ``request_sent`` follows from its class.

    Connecting (refused, DNS, connect timeout, no free pooled connection) fails before
    anything is sent: :class:`ProviderUnreachable`, safe to retry. Anything later may have
    reached the provider (a submit may have created a paid prediction): timeouts are
    :class:`ProviderTimeout`, dropped connections :class:`ProviderServerError`.
    """
    detail = safe_text(f"{type(exc).__name__}: {exc}", secret, limit=200)
    if isinstance(exc, _BEFORE_SENDING):
        return ProviderUnreachable(f"could not reach the provider ({detail})")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(f"provider did not answer in time ({detail})")
    if isinstance(exc, httpx.DecodingError):
        return ProviderProtocolError(f"provider answer could not be decoded ({detail})")
    return ProviderServerError(f"connection to the provider failed mid-request ({detail})")
