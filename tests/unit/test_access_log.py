"""The API's access log: one JSON-ready line per request, never a token or a query string."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from api.access_log import AccessLog, key_label, request_id

TOKEN = "tok-9f8e7d6c5b4a3210"


def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hi", status_code=201)


def _named(request: Request) -> PlainTextResponse:
    request.state.key_label = "tenant-a/key-1"  # what authentication sets once keys have names
    return PlainTextResponse("hi")


def _boom(request: Request) -> PlainTextResponse:
    raise RuntimeError("boom")


APP = AccessLog(
    Starlette(
        routes=[
            Route("/v1/jobs", _hello, methods=["POST"]),
            Route("/named", _named),
            Route("/boom", _boom),
            Route("/healthz", _hello),
        ]
    )
)


def call(method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """One request to the app in memory (a 500 comes back as the answer, not raised)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=APP, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(send())


def _lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "imagegen.access"]


def test_a_request_is_logged_with_its_key_label_and_without_its_query(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a caller with a bearer token and a request id
    caplog.set_level(logging.INFO, logger="imagegen.access")
    # When it calls with a secret in the query string
    reply = call(
        "POST",
        "/v1/jobs?sig=secret-in-query",
        {"Authorization": f"Bearer {TOKEN}", "X-Request-ID": "abc-123"},
    )
    # Then one line says what happened, naming the key without revealing it
    assert reply.headers["X-Request-ID"] == "abc-123"
    (record,) = _lines(caplog)
    assert record.getMessage() == "http_request" and record.levelno == logging.INFO
    fields = vars(record)
    assert (fields["method"], fields["path"], fields["status"]) == ("POST", "/v1/jobs", 201)
    assert fields["key"] == "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:8]
    assert fields["request_id"] == "abc-123" and fields["duration_ms"] >= 0
    assert TOKEN not in str(fields) and "secret-in-query" not in str(fields)


def test_a_label_set_by_authentication_wins(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imagegen.access")
    call("GET", "/named", {"Authorization": f"Bearer {TOKEN}"})
    assert vars(_lines(caplog)[0])["key"] == "tenant-a/key-1"


def test_failures_and_probes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="imagegen.access")
    call("GET", "/boom")
    call("POST", "/healthz")
    boom, probe = _lines(caplog)
    assert (vars(boom)["status"], boom.levelno) == (500, logging.WARNING)
    assert probe.levelno == logging.DEBUG


@pytest.mark.parametrize(
    ("header", "label"),
    [(None, None), ("Basic abc", None), ("Bearer", None), ("bearer x", "sha256:2d711642")],
)
def test_key_labels(header: str | None, label: str | None) -> None:
    assert key_label(header) == label


def test_request_ids_from_callers_are_plain_and_short() -> None:
    assert request_id("req-1.2:3") == "req-1.2:3"
    assert len(request_id("has space")) == 32 and len(request_id("x" * 65)) == 32
    assert len(request_id(None)) == 32
