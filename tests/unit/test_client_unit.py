"""The client library's own rules: when to retry and how long to wait, error bodies, results
that tolerate fields they do not know, query strings, the webhook check, and downloads (a
local HTTP server playing a proxy that fails, and an object store whose link expired)."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from imagegen_client import (
    APIError,
    ChecksumMismatch,
    Client,
    Conflict,
    InvalidRequest,
    Job,
    RateLimited,
    RetryPolicy,
    ServerError,
    WaitTimeout,
    _calls,
    _retry,
    errors,
    verify_webhook,
    webhooks,
)
from imagegen_client.resources import Batch, ManifestLine, page_from_api

from tests.conftest import ROOT
from tests.producers import readme_verifier

POLICY = RetryPolicy(max_retries=3, backoff_base_s=1, backoff_max_s=4, max_retry_after_s=60)
JOB_ID = "5b0c0000-0000-4000-8000-000000000001"


# --- when to try again ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "safe", "retry_after", "expected"),
    [
        (429, False, 7.0, 7.0),  # refused before any work: even a keyless POST
        (429, True, 500.0, None),  # longer than we agree to wait: raised
        (503, True, None, "backoff"),
        (503, True, 2.0, 2.0),
        (503, False, None, None),  # may have been processed: never repeated without a key
        (500, True, None, "backoff"),
        (501, True, None, None),
        (422, True, None, None),
        (409, True, None, None),
        (401, True, None, None),
    ],
)
def test_after_status(status: int, safe: bool, retry_after: float | None, expected: Any) -> None:
    wait = POLICY.after_status(status, 0, safe=safe, retry_after_s=retry_after)
    if expected == "backoff":
        assert wait is not None and 0 <= wait <= 1
    else:
        assert wait == expected


@pytest.mark.parametrize(
    ("error", "safe", "retried"),
    [
        (httpx.ConnectError("refused"), False, True),  # never left: always safe
        (httpx.ConnectTimeout("slow"), False, True),
        (httpx.ReadTimeout("no answer"), True, True),
        (httpx.ReadTimeout("no answer"), False, False),  # may have been processed
        (httpx.RemoteProtocolError("hung up"), False, False),
        (httpx.RemoteProtocolError("hung up"), True, True),
    ],
)
def test_after_error(error: Exception, safe: bool, retried: bool) -> None:
    assert (POLICY.after_error(error, 0, safe=safe) is not None) is retried


def test_retries_stop_at_the_budget() -> None:
    assert POLICY.after_status(503, 2, safe=True, retry_after_s=None) is not None
    assert POLICY.after_status(503, 3, safe=True, retry_after_s=None) is None
    assert POLICY.after_error(httpx.ConnectError("x"), 3, safe=True) is None


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    assert [POLICY.backoff_s(n, rand=lambda: 1.0) for n in range(5)] == [1, 2, 4, 4, 4]
    assert POLICY.backoff_s(3, rand=lambda: 0.0) == 0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert _retry.parse_retry_after("12") == 12
    assert _retry.parse_retry_after(format_datetime(now + timedelta(seconds=30)), now) == 30
    assert _retry.parse_retry_after(format_datetime(now - timedelta(seconds=30)), now) == 0
    assert _retry.parse_retry_after("soon") is None and _retry.parse_retry_after(None) is None


def test_poll_delays_grow_to_the_cap_with_jitter() -> None:
    low = _retry.poll_delays(1.0, 10.0, rand=lambda: 0.0)
    high = _retry.poll_delays(1.0, 10.0, rand=lambda: 1.0)
    assert [round(high(n), 2) for n in range(3)] == [1.2, 1.8, 2.7]
    assert low(0) == 0.8 and high(20) == pytest.approx(12.0)


# --- what the API answers ------------------------------------------------------------------------


def test_error_bodies_become_exceptions_with_code_field_and_rule() -> None:
    body = {
        "code": "invalid_request",
        "message": "2 bad line(s); nothing was enqueued",
        "errors": [{"line": 2, "field": "prompt", "rule": "required"}, {"field": "x", "rule": "y"}],
    }
    error = errors.from_answer(422, body, {"x-request-id": "r1"})
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.code, error.field, error.rule, error.errors[0].line) == (
        422,
        "invalid_request",
        "prompt",
        "required",
        2,
    )
    assert error.request_id == "r1"
    assert isinstance(errors.from_answer(409, {"code": "idempotency_conflict"}, {}), Conflict)
    assert isinstance(errors.from_answer(429, {}, {}, retry_after_s=3), RateLimited)
    proxy = errors.from_answer(502, "<html>bad gateway</html>", {})
    assert isinstance(proxy, ServerError) and proxy.code == "http_502" and proxy.field is None
    assert type(errors.from_answer(418, None, {})) is APIError


def job_body(**extra: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "status": "succeeded",
        "request": {"prompt": "a fox"},
        "error": None,
        "timings": {"created_at": "2026-12-02T09:00:00+00:00", "total_s": 3.5, "new": 1},
        "images": [
            {
                "index": 0,
                "url": "https://s3.example.com/a.png?sig",
                "expires_at": "2026-12-02T10:00:00+00:00",
                "sha256": "ab" * 32,
                "bytes": 10,
                "width": 1,
                "height": 1,
                "thumbnail": "a field of a later server",
            }
        ],
        **extra,
    }


def test_results_keep_what_they_know_and_tolerate_the_rest() -> None:
    job = Job.from_api(job_body(metadata={"order": "1234"}, cost={"usd": 1}))
    assert (job.done, job.succeeded, job.metadata) == (True, True, {"order": "1234"})
    assert job.timings.created_at == datetime(2026, 12, 2, 9, tzinfo=UTC)
    [image] = job.images
    assert (image.job_id, image.expires_at) == (JOB_ID, datetime(2026, 12, 2, 10, tzinfo=UTC))
    assert job.raw["cost"] == {"usd": 1} and image.raw["thumbnail"]
    old_server = Job.from_api({"id": JOB_ID, "status": "queued"})
    assert (old_server.images, old_server.error, old_server.metadata) == ((), None, None)
    failed = Job.from_api({"id": JOB_ID, "status": "failed", "error": {"code": "no_output"}})
    assert failed.error is not None and failed.error.code == "no_output"
    batch = Batch.from_api({"id": "b", "total": 2, "completed_at": None, "counts": {"queued": 2}})
    assert (batch.total, batch.completed, batch.completed_at) == (2, False, None)
    line = ManifestLine.from_api({"index": 0, "job_id": "j", "status": "queued", "prompt": "p"})
    assert line.raw["prompt"] == "p"


def test_pages_and_their_cursor() -> None:
    page = page_from_api({"items": [{"id": "a", "total": 1}], "next_cursor": "c2"}, Batch.from_api)
    assert ([b.id for b in page.items], page.next_cursor) == (["a"], "c2")
    assert page_from_api({"items": [], "next_cursor": None}, Batch.from_api).next_cursor is None


def test_query_strings() -> None:
    when = datetime(2026, 12, 2, tzinfo=UTC)
    assert _calls.query(
        {
            "status": ["failed", "cancelled"],
            "metadata": {"order": 12, "team": "ads"},
            "created_after": when,
            "cursor": None,
        }
    ) == [
        ("status", "failed"),
        ("status", "cancelled"),
        ("metadata.order", "12"),
        ("metadata.team", "ads"),
        ("created_after", "2026-12-02T00:00:00+00:00"),
    ]


def test_which_calls_are_safe_to_repeat() -> None:
    created = _calls.create_job({"prompt": "x", "seed": None}, None)
    assert created.safe and created.json == {"prompt": "x"}
    assert len(created.headers["Idempotency-Key"]) == 36
    assert _calls.create_job({"prompt": "x"}, "k").headers["Idempotency-Key"] == "k"
    assert _calls.job(JOB_ID, "cancel").safe and not _calls.job(JOB_ID, "retry").safe
    assert _calls.batch("b", "cancel").safe and not _calls.batch("b", "retry").safe
    with pytest.raises(TypeError):
        _calls.create_batch(None, None, {}, None)


# --- webhooks ------------------------------------------------------------------------------------


def signed(secret: str, body: bytes, age_s: int) -> dict[str, str]:
    timestamp = str(int(datetime.now(UTC).timestamp()) - age_s)
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "X-Imagegen-Timestamp": timestamp,
        "X-Imagegen-Signature": f"v1=00, v1={mac.hexdigest()}",
    }


def test_verify_webhook_is_the_readme_function() -> None:
    assert inspect.getsource(webhooks.verify_webhook) in (ROOT / "README.md").read_text()
    secret, body = "whsec", b'{"id": "e1"}'
    for verify in (verify_webhook, readme_verifier()):
        assert verify(secret, signed(secret, body, 0), body)
        assert verify(secret, signed(secret, body, 290), body)
        assert not verify(secret, signed(secret, body, 310), body)  # a replay
        assert not verify("other", signed(secret, body, 0), body)
        assert not verify(secret, signed(secret, body, 0), body + b" ")
        assert not verify(secret, {}, body)


# --- against a local HTTP server ------------------------------------------------------------------


class Scripted:
    """An HTTP server on 127.0.0.1 answering each path from a script of (status, headers,
    body), the last answer repeated; it records the requests."""

    def __init__(self, script: dict[str, list[tuple[int, dict[str, str], bytes]]]) -> None:
        self.script, self.requests = script, []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?")[0]
                length = int(self.headers.get("Content-Length", "0"))
                scripted.requests.append(
                    (self.command, path, dict(self.headers), self.rfile.read(length))
                )
                answers = scripted.script.get(path, [(404, {}, b"{}")])
                status, headers, body = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[Scripted] = []

    def start(script: dict[str, list[tuple[int, dict[str, str], bytes]]]) -> Scripted:
        servers.append(Scripted(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer(status: int, body: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


UNAVAILABLE = answer(503, {"code": "unavailable", "message": "down"})


def test_reads_are_retried_through_5xx_and_keyless_posts_are_not(scripted: Any) -> None:
    sleeps: list[float] = []
    server = scripted(
        {
            f"/v1/jobs/{JOB_ID}": [UNAVAILABLE, UNAVAILABLE, answer(200, job_body())],
            f"/v1/jobs/{JOB_ID}/retry": [UNAVAILABLE],
            "/v1/jobs": [answer(502, {}), answer(202, job_body(status="queued"))],
        }
    )
    with Client(server.url, "t", retry=POLICY, sleep=sleeps.append) as client:
        assert client.jobs.get(JOB_ID).succeeded
        with pytest.raises(ServerError) as raised:
            client.jobs.retry(JOB_ID)
        assert client.jobs.create("a fox").status == "queued"
    assert raised.value.status == 503 and len(sleeps) == 3
    posts = [(r[1], r[2].get("Idempotency-Key")) for r in server.requests if r[0] == "POST"]
    assert [path for path, _ in posts] == [f"/v1/jobs/{JOB_ID}/retry", "/v1/jobs", "/v1/jobs"]
    assert posts[1][1] and posts[1][1] == posts[2][1]  # the retry carried the same key
    assert all(r[2]["Authorization"] == "Bearer t" for r in server.requests)


def test_a_429_waits_as_long_as_retry_after_says(scripted: Any) -> None:
    sleeps: list[float] = []
    limited = answer(429, {"code": "rate_limited", "message": "slow down"}, **{"Retry-After": "7"})
    server = scripted({f"/v1/jobs/{JOB_ID}": [limited, answer(200, job_body())]})
    with Client(server.url, "t", retry=POLICY, sleep=sleeps.append) as client:
        client.jobs.get(JOB_ID)
    assert sleeps == [7.0]


def test_wait_polls_until_the_job_ends_or_times_out(scripted: Any) -> None:
    queued, done = answer(200, job_body(status="running")), answer(200, job_body())
    server = scripted({f"/v1/jobs/{JOB_ID}": [queued, queued, done]})
    sleeps: list[float] = []
    with Client(server.url, "t", sleep=sleeps.append) as client:
        assert client.jobs.wait(JOB_ID, interval_s=1, max_interval_s=5).succeeded
        assert len(sleeps) == 2 and 0.8 <= sleeps[0] <= 1.2 and 1.2 <= sleeps[1] <= 1.8
        server.script[f"/v1/jobs/{JOB_ID}"] = [queued]
        with pytest.raises(WaitTimeout) as raised:
            client.jobs.wait(JOB_ID, timeout=0.05, interval_s=0.01)
    assert raised.value.last.status == "running"


def test_download_checks_the_sha256_and_refreshes_an_expired_link(
    scripted: Any, tmp_path: Path
) -> None:
    data = b"\x89PNG fake picture bytes"
    digest = hashlib.sha256(data).hexdigest()
    store = scripted(
        {
            "/old.png": [(403, {}, b"<Error><Code>AccessDenied</Code>Request has expired</Error>")],
            "/fresh.png": [(200, {"Content-Type": "image/png"}, data)],
        }
    )
    image = {"index": 0, "url": f"{store.url}/fresh.png", "sha256": digest, "bytes": len(data)}
    api = scripted({f"/v1/jobs/{JOB_ID}": [answer(200, job_body(images=[image]))]})
    stale = Job.from_api(job_body(images=[{**image, "url": f"{store.url}/old.png"}])).images[0]
    with Client(api.url, "secret-token") as client:
        # a link that answers 403: the job is read again for a fresh one
        assert client.download(stale, tmp_path / "a.png").read_bytes() == data
        # a link past its expires_at: refreshed before use
        past = Job.from_api(
            job_body(
                images=[
                    {**image, "url": f"{store.url}/old.png", "expires_at": "2020-01-01T00:00:00Z"}
                ]
            )
        ).images[0]
        assert client.download(past, tmp_path / "b.png").read_bytes() == data
        # a wrong checksum: an error, and nothing left behind
        wrong = Job.from_api(job_body(images=[{**image, "sha256": "0" * 64}])).images[0]
        with pytest.raises(ChecksumMismatch):
            client.download(wrong, tmp_path / "c.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]
    assert [r[1] for r in store.requests] == ["/old.png", "/fresh.png", "/fresh.png", "/fresh.png"]
    assert all("Authorization" not in r[2] for r in store.requests)  # the token stays home


def test_the_client_imports_nothing_of_the_service() -> None:
    package = ROOT / "clients" / "python" / "imagegen_client"
    imports = set()
    for path in package.glob("*.py"):
        imports |= set(re.findall(r"^(?:from|import) (\w+)", path.read_text(), re.MULTILINE))
    assert imports <= {
        "__future__",
        "asyncio",
        "collections",
        "contextlib",
        "dataclasses",
        "datetime",
        "email",
        "hashlib",
        "hmac",
        "httpx",
        "imagegen_client",
        "itertools",
        "json",
        "os",
        "pathlib",
        "random",
        "time",
        "typing",
        "urllib",
        "uuid",
    }
