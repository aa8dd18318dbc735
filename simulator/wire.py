"""What goes over the wire: the success envelope, prediction JSON with its drift, error bodies.

Schema drift (``urls`` as a list, ``error`` as "", both date formats, NSFW variants, status
aliases) is applied here and only here, so the rest of the simulator deals in one clean shape.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi.responses import HTMLResponse, JSONResponse, Response

from simulator.faults import FaultSet, arg_of
from simulator.state import MODEL, Prediction

_ALIASES = {
    "a": {
        "created": "queueing",
        "processing": "in_progress",
        "completed": "success",
        "failed": "error",
    },
    "b": {
        "created": "pending",
        "processing": "processing",
        "completed": "succeeded",
        "failed": "failed",
    },
}
_NGINX_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class ErrorSpec:
    """The answer a submit-stage fault (or a transient poll error) gives."""

    status: int
    message: str
    type: str
    html: bool = False


#: Submit-stage faults by name; ``http_403``, ``http_429*`` and 5xx ARGs adjust them in app code.
SUBMIT_ERRORS: dict[str, ErrorSpec] = {
    "http_401": ErrorSpec(401, "Invalid API key", "unauthorized"),
    "http_403": ErrorSpec(
        403, "Insufficient balance for the requested operation", "insufficient_balance"
    ),
    "http_429": ErrorSpec(
        429, "Rate limit exceeded, please try again later", "rate_limit_exceeded"
    ),
    "http_429_retry_after": ErrorSpec(
        429, "Rate limit exceeded, please try again later", "rate_limit_exceeded"
    ),
    "http_500": ErrorSpec(500, "Internal server error", "internal_error"),
    "http_502": ErrorSpec(502, "Bad Gateway", "bad_gateway", html=True),
    "http_503": ErrorSpec(503, "Service temporarily unavailable", "service_unavailable"),
    "http_504": ErrorSpec(504, "Gateway Time-out", "gateway_timeout", html=True),
    "content_policy": ErrorSpec(400, "Input may not meet the guidelines", "503"),
    "invalid_params": ErrorSpec(400, "Invalid parameters", "invalid_request"),
}
_PERMISSION = ErrorSpec(
    403, "Your API key doesn't have permission to access this resource", "forbidden"
)


def envelope(data: dict[str, Any]) -> dict[str, Any]:
    """The success envelope around a prediction."""
    return {"code": 200, "message": "success", "data": data}


def prediction_data(
    prediction: Prediction, *, status: str, result_url: str, outputs: list[str]
) -> dict[str, Any]:
    """The prediction as the provider shows it in ``status``, with its schema drift applied."""
    faults = prediction.faults
    done = status in ("completed", "failed")
    execution_ms = _execution_ms(prediction) if done else 0
    return {
        "id": prediction.id,
        "model": MODEL,
        "status": _status_name(faults, status),
        "outputs": outputs,
        "urls": [{"get": result_url}] if "urls_list" in faults else {"get": result_url},
        "error": _error(prediction, status),
        "executionTime": execution_ms,
        "timings": {"inference": execution_ms},
        "has_nsfw_contents": _nsfw(prediction, len(outputs)),
        "created_at": format_created_at(prediction.created_at, rfc3339="date_rfc3339" in faults),
    }


def format_created_at(timestamp: float, *, rfc3339: bool) -> str:
    """``2026-01-01 00:00:00`` (UTC), or RFC 3339 with nanoseconds."""
    seconds = int(timestamp)
    if not rfc3339:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    nanos = round((timestamp - seconds) * 1e9) % 1_000_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def error_response(spec: ErrorSpec, headers: dict[str, str] | None = None) -> Response:
    """An error answer: the contract's JSON body, or a gateway's HTML page."""
    if spec.html:
        page = _NGINX_PAGE.format(status=spec.status, reason=spec.message)
        return HTMLResponse(page, status_code=spec.status, headers=headers)
    body = {"error": {"message": spec.message, "type": spec.type}}
    return JSONResponse(body, status_code=spec.status, headers=headers)


def submit_error(name: str, faults: FaultSet) -> Response:
    """The answer of a submit-stage fault, with the variant its ARG picks."""
    spec = SUBMIT_ERRORS[name]
    arg = arg_of(faults, name)
    if name == "http_403" and arg == "permission":
        spec = _PERMISSION
    if arg in ("html", "json") and spec.status >= 500:
        spec = ErrorSpec(spec.status, spec.message, spec.type, html=arg == "html")
    if name.startswith("http_429") and arg and arg.isdigit():
        return error_response(spec, {"Retry-After": arg})
    return error_response(spec)


def server_error(status: int) -> Response:
    """A 5xx in the same style as the submit faults (ghosts)."""
    spec = SUBMIT_ERRORS.get(f"http_{status}", SUBMIT_ERRORS["http_500"])
    return error_response(ErrorSpec(status, spec.message, spec.type, spec.html))


def _status_name(faults: FaultSet, status: str) -> str:
    if "status_alias" not in faults:
        return status
    aliases = _ALIASES.get(arg_of(faults, "status_alias") or "a", _ALIASES["a"])
    return aliases[status]


def _error(prediction: Prediction, status: str) -> str | None:
    if status == "failed":
        return prediction.outcome.error
    return "" if "error_empty" in prediction.faults else None


def _nsfw(prediction: Prediction, output_count: int) -> list[bool] | None:
    faults = prediction.faults
    if "nsfw_null" in faults:
        return None
    if "nsfw_empty" in faults:
        return []
    return [prediction.outcome.nsfw] * output_count


def _execution_ms(prediction: Prediction) -> int:
    if prediction.done_at is None:
        return 0
    return round((prediction.done_at - prediction.processing_at) * 1000)
