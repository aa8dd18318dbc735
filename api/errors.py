"""Every error of the HTTP API as one JSON shape: a code, a message and the (field, rule) pairs.

``{"code": "invalid_request", "message": "prompt: ...", "errors": [{"field": "prompt",
"rule": "String should have at least 1 character"}]}``; batch lines also carry ``line``.
FastAPI's own validation errors are reshaped to the same pairs. Nothing is written on an error:
validation happens before the first insert, and every write is one transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.core.errors import (
    AmbiguousId,
    BadInput,
    BadLines,
    BatchNotFound,
    ConfigurationError,
    IdempotencyConflict,
    JobNotFound,
)
from worker.service.operator import NotRetryable
from worker.service.webhooks import DeliveryBusy, DeliveryNotFound

log = logging.getLogger("imagegen.api")


class Problem(BaseModel):
    """One thing wrong with the input: which field, which rule (and which batch line)."""

    field: str
    rule: str
    line: int | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    errors: list[Problem] = []


class ApiError(Exception):
    """An error answered as-is (authentication, size limits, unsupported media)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[Problem] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors = errors or []
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    errors: list[Problem] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(code=code, message=message, errors=errors or [])
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def _bad_input(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BadInput)
    if isinstance(exc, BadLines):
        errors = [Problem(line=line, field=field, rule=rule) for line, field, rule in exc.lines]
        message = f"{len({p.line for p in errors})} bad line(s); nothing was enqueued"
    else:
        errors = [Problem(field=field, rule=rule) for field, rule in exc.problems]
        message = exc.message
    return error_response(422, "invalid_request", message, errors)


def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return error_response(404, "not_found", str(exc))


def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return error_response(409, "idempotency_conflict", str(exc))


def _ambiguous(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AmbiguousId)
    rule = f"matches several ids: {', '.join(exc.candidates)}"
    return error_response(409, exc.code, str(exc), [Problem(field=exc.field, rule=rule)])


def _not_retryable(_: Request, exc: Exception) -> JSONResponse:
    return error_response(409, "not_retryable", str(exc))


def _busy(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DeliveryBusy)
    return error_response(409, exc.code, str(exc))


def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.errors, exc.headers)


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        Problem(field="body" if e["type"] == "json_invalid" else _field(e["loc"]), rule=_rule(e))
        for e in exc.errors()
    ]
    message = "; ".join(f"{p.field}: {p.rule}" for p in errors)
    return error_response(422, "invalid_request", message, errors)


def _field(loc: Any) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if parts and parts[0] == "Idempotency-Key".lower():
        return "Idempotency-Key"
    return ".".join(parts) or "body"


def _rule(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "is not a known field"
    if error["type"] == "json_invalid":
        return f"is not valid JSON ({error.get('ctx', {}).get('error', 'syntax error')})"
    return str(error["msg"]).removeprefix("Value error, ")


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        exc.status_code, "http_error"
    )
    errors = [Problem(field="body", rule=str(exc.detail))] if exc.status_code == 413 else []
    return error_response(
        exc.status_code, code, str(exc.detail), errors, headers=getattr(exc, "headers", None)
    )


def _configuration(_: Request, exc: Exception) -> JSONResponse:
    log.error("configuration_error", extra={"error": str(exc)})
    return error_response(503, "unavailable", "the service is misconfigured; see its logs")


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred; see the logs")


def install(app: FastAPI) -> None:
    """Route every error through the shapes above."""
    app.add_exception_handler(BadInput, _bad_input)
    app.add_exception_handler(JobNotFound, _not_found)
    app.add_exception_handler(BatchNotFound, _not_found)
    app.add_exception_handler(IdempotencyConflict, _conflict)
    app.add_exception_handler(AmbiguousId, _ambiguous)
    app.add_exception_handler(NotRetryable, _not_retryable)
    app.add_exception_handler(DeliveryNotFound, _not_found)
    app.add_exception_handler(DeliveryBusy, _busy)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ConfigurationError, _configuration)
    app.add_exception_handler(Exception, _unexpected)


#: Documented error responses, for the OpenAPI description of each route.
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    described = {
        401: "Missing or invalid bearer token",
        403: "The key lacks the scope this needs (named in the message)",
        404: "Unknown id",
        409: "Idempotency key reused with a different request, or a short id matching "
        "several (code ambiguous_id, the candidates listed)",
        413: "Body too large",
        415: "Unsupported content type",
        422: "Invalid input: every field and rule",
        429: "Too many failed authentications from this address (see Retry-After)",
    }
    if 401 in statuses:  # wherever a token is checked, too many wrong ones are a 429
        statuses = (*statuses, 429)
    return {status: {"model": ErrorBody, "description": described[status]} for status in statuses}
