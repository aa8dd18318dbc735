"""Every way a provider call can fail maps to the right error, with a safe, useful message."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

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
from worker.provider.client import ProviderClient
from worker.provider.errors_map import (
    envelope_error,
    error_for_status,
    error_from_response,
    read_error_body,
    retry_after_seconds,
)

KEY = "sk-SECRET-do-not-log"
PID = "0123456789abcdef0123456789abcdef"

Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler) -> ProviderClient:
    return ProviderClient("https://provider.test", KEY, transport=httpx.MockTransport(handler))


def answering(status: int, **kwargs: Any) -> Handler:
    return lambda request: httpx.Response(status, **kwargs)


def raising(exc_type: type[httpx.RequestError]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return handler


def assert_no_secret(error: BaseException) -> None:
    for text in (str(error), repr(error), *map(str, error.args)):
        assert KEY not in text
        assert "SECRET" not in text


def response(status: int, **kwargs: Any) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "https://provider.test/"), **kwargs)


# --- body shapes --------------------------------------------------------------------------------

BODIES: dict[str, dict[str, Any]] = {
    "nested": {"json": {"error": {"message": "insufficient balance", "type": "quota"}}},
    "openai": {
        "json": {
            "error": {
                "message": "insufficient balance",
                "type": "invalid_request_error",
                "code": "quota",
            }
        }
    },
    "bare": {"json": {"error": "insufficient balance"}},
    "top_level": {"json": {"code": 4001, "message": "insufficient balance"}},
    "text": {"text": "insufficient balance"},
    "html": {
        "text": "<!DOCTYPE html><html><head><title>insufficient balance</title></head>"
        "<body><h1>Oops</h1><script>var x = 1;</script></body></html>",
        "headers": {"Content-Type": "text/html"},
    },
    "empty": {"content": b""},
}

STATUSES: list[tuple[int, type[ProviderError]]] = [
    (400, InvalidRequest),
    (401, AuthenticationFailed),
    (403, PermissionDenied),
    (404, PredictionNotFound),
    (405, InvalidRequest),
    (408, ProviderTimeout),
    (409, InvalidRequest),
    (413, InvalidRequest),
    (422, InvalidRequest),
    (429, RateLimited),
    (500, ProviderServerError),
    (502, ProviderServerError),
    (503, ProviderServerError),
    (504, ProviderServerError),
    (520, ProviderServerError),
    (302, ProviderProtocolError),
]


@pytest.mark.parametrize("shape", BODIES)
@pytest.mark.parametrize(("status", "cls"), STATUSES)
def test_every_status_with_every_body_shape(
    status: int, cls: type[ProviderError], shape: str
) -> None:
    error = error_from_response(response(status, **BODIES[shape]), secret=KEY)
    assert type(error) is cls
    assert error.status_code == status
    assert f"HTTP {status}" in error.message
    if shape != "empty":
        assert "insufficient balance" in error.message
    assert "<" not in error.message
    assert len(error.message) < 400


@pytest.mark.parametrize(
    ("status", "cls", "fleet_wide", "retryable"),
    [
        (401, AuthenticationFailed, True, False),
        (403, PermissionDenied, True, False),
        (429, RateLimited, False, True),
        (500, ProviderServerError, False, True),
        (400, InvalidRequest, False, False),
    ],
)
def test_classes_carry_the_worker_decision(
    status: int, cls: type[ProviderError], fleet_wide: bool, retryable: bool
) -> None:
    error = error_from_response(response(status, json={"error": {"message": "x"}}))
    assert (type(error), error.fleet_wide, error.retryable) == (cls, fleet_wide, retryable)


@pytest.mark.parametrize(
    ("payload", "message", "type_", "code"),
    [
        ({"error": {"message": "m", "type": "t"}}, "m", "t", None),
        ({"error": {"message": "m", "type": "t", "code": "c"}}, "m", "t", "c"),
        ({"error": {"message": "m", "type": "503"}, "code": 400}, "m", "503", "400"),
        ({"error": "m"}, "m", None, None),
        (
            {"error": "Bad Request", "message": "prompt too long"},
            "Bad Request: prompt too long",
            None,
            None,
        ),
        ({"code": 400, "message": "m"}, "m", None, "400"),
        ({"code": "invalid_parameter", "msg": "m"}, "m", None, "invalid_parameter"),
        (
            {"detail": [{"loc": ["prompt"], "msg": "too long"}]},
            '[{"loc": ["prompt"], "msg": "too long"}]',
            None,
            None,
        ),
        ("just a string", "just a string", None, None),
        ({}, None, None, None),
        ([1, 2], "[1, 2]", None, None),
    ],
)
def test_error_body_is_parsed_loosely(
    payload: Any, message: str | None, type_: str | None, code: str | None
) -> None:
    body = read_error_body(response(400, content=json.dumps(payload).encode()))
    assert (body.message, body.type, body.code) == (message, type_, code)


def test_html_without_title_is_replaced() -> None:
    error = error_from_response(response(502, text="<html><body>Bad gateway</body></html>"))
    assert error.message == "provider answered HTTP 502 Bad Gateway: HTML error page"


def test_html_is_recognised_without_content_type() -> None:
    error = error_from_response(response(503, text="\n <html><title>Down &amp; out</title>"))
    assert error.message.endswith("HTML error page: Down & out")


def test_empty_body_says_so() -> None:
    error = error_from_response(response(504))
    assert error.message == "provider answered HTTP 504 Gateway Timeout: no error message"


def test_non_utf8_body_does_not_crash() -> None:
    error = error_from_response(response(500, content=b"\xff\xfe\x00garbage"))
    assert isinstance(error, ProviderServerError)


def test_long_messages_are_truncated() -> None:
    error = error_from_response(response(400, json={"error": {"message": "word " * 500}}))
    assert len(error.message) < 360
    assert error.message.endswith("…")


# --- 400: content policy or plain ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "cls"),
    [
        (
            {"error": {"message": "Input may not meet the guidelines", "type": "503"}},
            ContentPolicyViolation,
        ),
        ({"error": {"message": "blocked", "type": "503"}}, ContentPolicyViolation),
        (
            {
                "error": {
                    "message": "x",
                    "type": "invalid_request_error",
                    "code": "content_policy_violation",
                }
            },
            ContentPolicyViolation,
        ),
        ({"error": "Input may not meet the guidelines"}, ContentPolicyViolation),
        ({"code": 400, "message": "prompt contains sensitive words"}, ContentPolicyViolation),
        ({"error": {"message": "rejected by moderation"}}, ContentPolicyViolation),
        ({"error": {"message": "prompt is required", "type": "invalid_request"}}, InvalidRequest),
        ({"error": {"message": "seed out of range", "type": "400"}}, InvalidRequest),
        ({"code": 400, "message": "aspect_ratio must be one of ..."}, InvalidRequest),
    ],
)
def test_content_policy_400_vs_plain_400(payload: Any, cls: type[ProviderError]) -> None:
    error = error_from_response(response(400, json=payload))
    assert type(error) is cls
    assert error.status_code == 400
    assert not error.retryable


def test_policy_wording_on_other_statuses_does_not_change_the_class() -> None:
    error = error_from_response(response(403, json={"error": "blocked by policy"}))
    assert isinstance(error, PermissionDenied)


# --- Retry-After --------------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("30", 30.0),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("Thu, 01 Jan 2026 12:01:30 GMT", 90.0),
        ("Thu, 01 Jan 2026 11:00:00 GMT", 0.0),
        ("Thursday, 01-Jan-26 12:00:10 GMT", 10.0),
        ("soon", None),
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("1e3", None),
        ("9" * 400, None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == expected


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (429, "12", 12.0),
        (429, "garbage", None),
        (429, None, None),
        (503, "5", 5.0),
        (401, "12", None),
        (400, "12", None),
    ],
)
def test_retry_after_is_kept_where_waiting_helps(
    status: int, header: str | None, expected: float | None
) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    error = error_from_response(response(status, headers=headers, json={"error": "slow down"}))
    assert error.retry_after_s == expected


def test_retry_after_http_date_is_relative_to_now() -> None:
    error = error_from_response(
        response(429, headers={"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"})
    )
    assert isinstance(error, RateLimited)
    assert error.retry_after_s is not None and error.retry_after_s > 10**9


# --- 200 envelopes that carry an error ----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "cls", "status"),
    [
        ({"code": 401, "message": "invalid api key", "data": None}, AuthenticationFailed, 401),
        ({"code": "403", "message": "insufficient balance"}, PermissionDenied, 403),
        ({"code": 429, "message": "too many requests"}, RateLimited, 429),
        (
            {"code": 400, "message": "Input may not meet the guidelines"},
            ContentPolicyViolation,
            400,
        ),
        ({"code": 500, "message": "internal"}, ProviderServerError, 500),
        ({"code": 200, "message": "success"}, ProviderProtocolError, None),
        ({"error": {"message": "insufficient_quota"}}, ProviderProtocolError, None),
        ({"code": 1200, "message": "weird"}, ProviderProtocolError, None),
        ([], ProviderProtocolError, None),
    ],
)
def test_envelope_errors(payload: Any, cls: type[ProviderError], status: int | None) -> None:
    error = envelope_error(payload, secret=KEY)
    assert type(error) is cls
    assert error is not None and error.status_code == status
    assert "HTTP 200" in error.message


@pytest.mark.parametrize(
    "payload",
    [
        {"code": 200, "data": {"id": PID, "status": "created"}},
        {"code": 500, "data": {"id": PID, "status": "created"}},
        {"id": PID, "status": "created"},
    ],
)
def test_envelopes_with_a_prediction_are_not_errors(payload: Any) -> None:
    assert envelope_error(payload) is None


def test_error_for_status_keeps_retry_after_only_for_retryable_waits() -> None:
    assert error_for_status(429, "m", retry_after_s=3.0).retry_after_s == 3.0
    assert error_for_status(404, "m", retry_after_s=3.0).retry_after_s is None


# --- through the client: HTTP errors and transport errors ---------------------------------------


@pytest.mark.parametrize(("status", "cls"), STATUSES)
@pytest.mark.parametrize("call", ["submit", "poll"])
def test_client_raises_mapped_errors(status: int, cls: type[ProviderError], call: str) -> None:
    client = client_for(answering(status, json={"error": {"message": "nope"}}))
    if call == "submit" and status == 404:
        cls = InvalidRequest  # a 404 on submit means a wrong endpoint, not a missing prediction
    with pytest.raises(cls) as caught:
        client.submit({"prompt": "a cat"}) if call == "submit" else client.get_result(PID)
    assert caught.value.status_code == status
    assert_no_secret(caught.value)


def test_submit_404_points_at_the_base_url() -> None:
    with pytest.raises(InvalidRequest, match="GPTPROTO_BASE_URL") as caught:
        client_for(answering(404, text="Not Found")).submit({"prompt": "a cat"})
    assert "https://provider.test" in caught.value.message


@pytest.mark.parametrize(
    ("exc_type", "cls", "sent"),
    [
        (httpx.ConnectError, ProviderUnreachable, False),
        (httpx.ConnectTimeout, ProviderUnreachable, False),
        (httpx.PoolTimeout, ProviderUnreachable, False),
        (httpx.ProxyError, ProviderUnreachable, False),
        (httpx.ReadTimeout, ProviderTimeout, True),
        (httpx.WriteTimeout, ProviderTimeout, True),
        (httpx.ReadError, ProviderServerError, True),
        (httpx.WriteError, ProviderServerError, True),
        (httpx.RemoteProtocolError, ProviderServerError, True),
        (httpx.DecodingError, ProviderProtocolError, True),
    ],
)
@pytest.mark.parametrize("call", ["submit", "poll"])
def test_transport_errors(
    exc_type: type[httpx.RequestError], cls: type[ProviderError], sent: bool, call: str
) -> None:
    client = client_for(raising(exc_type))
    with pytest.raises(cls) as caught:
        client.submit({"prompt": "a cat"}) if call == "submit" else client.get_result(PID)
    error = caught.value
    assert error.request_sent is sent
    assert error.retryable
    assert error.status_code is None
    assert exc_type.__name__ in error.message
    assert_no_secret(error)


@pytest.mark.parametrize("body", [b"", b"not json", b"<html>ok</html>", b"\xff\xfe"])
def test_200_with_unparseable_body_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProviderProtocolError, match="not JSON") as caught:
        client_for(answering(200, content=body)).get_result(PID)
    assert caught.value.status_code == 200


def test_200_without_a_prediction_is_a_protocol_error() -> None:
    client = client_for(answering(200, json={"code": 200, "message": "success", "data": None}))
    with pytest.raises(ProviderProtocolError, match="without a prediction"):
        client.submit({"prompt": "a cat"})


def test_200_with_an_error_envelope_is_mapped() -> None:
    client = client_for(answering(200, json={"code": 403, "message": "insufficient balance"}))
    with pytest.raises(PermissionDenied, match="insufficient balance"):
        client.submit({"prompt": "a cat"})


# --- the key never leaks ------------------------------------------------------------------------

ECHOES: list[Handler] = [
    answering(401, json={"error": {"message": f"invalid key {KEY}", "type": "auth"}}),
    answering(401, json={"error": {"message": "bad header", "type": f"Bearer {KEY}"}}),
    answering(403, json={"error": f"key {KEY} has insufficient balance"}),
    answering(400, json={"code": 400, "message": f"Authorization: Bearer {KEY}"}),
    answering(500, text=f"<html><title>error for {KEY}</title></html>"),
    answering(502, text=f"upstream said: {KEY}"),
    answering(200, json={"code": 401, "message": f"bad key {KEY}"}),
    answering(200, json={"data": {"id": PID, "status": f"weird {KEY}"}}),
    answering(200, json={"data": {"id": f"{KEY}/x", "status": "created"}}),
]


@pytest.mark.parametrize("handler", ECHOES)
def test_key_echoed_by_the_provider_is_scrubbed(handler: Handler) -> None:
    with pytest.raises(ProviderError) as caught:
        client_for(handler).get_result(PID)
    assert_no_secret(caught.value)


def test_key_is_scrubbed_even_when_it_does_not_look_like_a_key() -> None:
    secret = "plain-secret-value-123"
    error = error_from_response(response(401, json={"error": f"bad {secret}"}), secret=secret)
    assert secret not in error.message


def test_key_like_text_is_scrubbed_without_knowing_the_key() -> None:
    error = error_from_response(response(401, json={"error": "bad sk-other-secret-key"}))
    assert "other-secret" not in error.message


def test_transport_error_text_is_scrubbed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"failed with {request.headers['Authorization']}")

    with pytest.raises(ProviderUnreachable) as caught:
        client_for(handler).submit({"prompt": "a cat"})
    assert_no_secret(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
