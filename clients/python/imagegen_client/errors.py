"""The client's errors: one base class; the API's answers carry its ``code``, status and the
(field, rule) pairs of its error body (``{"code", "message", "errors": [{"field", "rule",
"line"?}]}``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imagegen_client.resources import Problem


class ImagegenError(Exception):
    """Base class of every error this client raises."""


class APIError(ImagegenError):
    """The API answered with an error status.

    ``status`` (HTTP), ``code`` (``invalid_request``, ``not_found``, ``unauthorized``, …),
    ``message``, ``errors`` (every ``Problem``), and ``field`` / ``rule`` of the first one.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: tuple[Problem, ...] = (),
        *,
        retry_after_s: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors
        self.retry_after_s, self.request_id = retry_after_s, request_id

    @property
    def field(self) -> str | None:
        return self.errors[0].field if self.errors else None

    @property
    def rule(self) -> str | None:
        return self.errors[0].rule if self.errors else None


class InvalidRequest(APIError):
    """422: the input broke a rule (``field``, ``rule``; ``errors`` lists all, with ``line``
    for batch lines). Nothing was written."""


class AuthenticationError(APIError):
    """401: no valid bearer token."""


class PermissionDenied(APIError):
    """403: the key lacks the scope the call needs (the message names it)."""


class NotFound(APIError):
    """404: unknown id (or another tenant's)."""


class Conflict(APIError):
    """409: an idempotency key reused with another body, or an action the state forbids."""


class PayloadTooLarge(APIError):
    """413: the body is over the server's limit."""


class RateLimited(APIError):
    """429: too many requests (``retry_after_s`` says when to come back)."""


class ServerError(APIError):
    """5xx: the server failed (retried before being raised)."""


class TransportError(ImagegenError):
    """No answer: the connection failed or timed out (after the retries)."""


class WaitTimeout(ImagegenError):
    """``wait`` gave up before the job or batch ended; ``last`` is what was seen last."""

    def __init__(self, message: str, last: Any) -> None:
        super().__init__(message)
        self.last = last


class ChecksumMismatch(ImagegenError):
    """A download did not match the image's sha256 (nothing was left at the path)."""


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
}


def from_answer(
    status: int, body: Any, headers: Mapping[str, str], retry_after_s: float | None = None
) -> APIError:
    """The error of an answer, whatever its body (the API's shape, or a proxy's page)."""
    if not isinstance(body, dict):
        body = {}
    problems = tuple(
        Problem(str(p.get("field", "")), str(p.get("rule", "")), p.get("line"))
        for p in body.get("errors") or ()
        if isinstance(p, dict)
    )
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    return cls(
        status,
        str(body.get("code") or f"http_{status}"),
        str(body.get("message") or f"HTTP {status}"),
        problems,
        retry_after_s=retry_after_s,
        request_id=headers.get("x-request-id"),
    )
