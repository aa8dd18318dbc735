"""Hostile input at every write endpoint: no input gives a 5xx, and a refused one writes nothing.

Two fuzzers, both against the real app over HTTP and real Postgres, bounded to stay well under
a minute together:

- schemathesis, driven by the OpenAPI description: generated bodies, parameters and headers,
  valid and invalid, for every ``/v1`` operation;
- hypothesis, with no schema at all: arbitrary JSON (nested, any key, text with NUL characters
  and lone surrogates, numbers of any size) and arbitrary bytes, posted to every ``/v1`` write
  endpoint and to every form of the dashboard (signed in, with the session's CSRF token so the
  forms' own rules are reached). Every answer must be below 500, and every 4xx must leave the
  jobs, events, images, batches, webhook deliveries, the fleet's pause and the revoked sessions
  exactly as they were. (A refused sign-in does write one thing, by design: the failure is
  counted against the address in ``auth_failures``.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from sqlalchemy import text

from api.app import create_app
from tests.dashboard import csrf_of, sign_in
from tests.producers import AUTH, configure, row_counts
from worker.db.engine import get_engine
from worker.service import jobs

pytestmark = pytest.mark.integration


@schemathesis.serializer("application/x-ndjson")
def _jsonl(_: object, value: Any) -> bytes:
    """JSONL bodies: the generated text as it is, anything else one JSON document per line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


# the app's own description; the ops endpoints (which check live dependencies) are left out
schema = schemathesis.openapi.from_dict(create_app().openapi()).include(path_regex="^/v1/")


@pytest.fixture
def base_url(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> str:
    configure(monkeypatch)
    return api_url


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTH, checks=[not_a_server_error])


# --- schema-free: arbitrary JSON and bytes ------------------------------------------------------

#: Any code point, lone surrogates included (JSON escapes them; Postgres cannot store them),
#: and often a NUL in the middle.
_CHARS = st.characters(exclude_categories=())
_TEXT = st.one_of(
    st.text(_CHARS, max_size=8).map(lambda t: f"{t}\x00{t}"), st.text(_CHARS, max_size=24)
)
_SCALARS = st.one_of(
    _TEXT,  # most fields are text: weighed twice
    _TEXT,
    st.none() | st.booleans(),
    st.integers() | st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1:1", "4K", "1080p", "https://example.com/a.png", "12", "true", "yes"]),
)
DEEP = st.integers(min_value=20, max_value=5000).map(lambda n: "[" * n + "]" * n)
JOB_KEYS = ["prompt", "images", "aspect_ratio", "resolution", "seed", "callback_url", "ref"]
JOB_KEYS += ["deadline_s"]
#: The fields each endpoint reads, so generated objects reach the rules behind the first one.
KEYS = {
    "/v1/jobs": JOB_KEYS,
    "/v1/batches": ["jobs", "name", "callback_url", "deadline_s", *JOB_KEYS],
    "/v1/fleet/pause": ["reason"],
    "/dashboard/login": ["token", "next"],
    "/dashboard/fleet/pause": ["reason", "confirmed"],
}


#: The adversarial review's inputs, as seeds the fuzzer starts from and varies.
SEEDS = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"reason": "a\\u0000b"}',
    b'{"prompt": "caf\xe9"}',
    b'{"prompt": "x", "seed": "12"}',
    b'{"prompt": "x", "seed": true}',
    b'[{"prompt": "x", "ref": "\\ud800"}]',
]


def json_values(keys: list[str]) -> st.SearchStrategy[Any]:
    names = st.sampled_from(keys or ["x"]) | _TEXT
    return st.recursive(
        _SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
        max_leaves=16,
    )


def json_bodies(path: str) -> st.SearchStrategy[bytes]:
    keys = KEYS.get(path, [])
    values = json_values(keys)
    known = st.dictionaries(st.sampled_from(keys or ["x"]), _SCALARS, min_size=1, max_size=2)
    return st.one_of(
        values.map(lambda value: json.dumps(value).encode()),
        known.map(lambda value: json.dumps(value).encode()),  # weighed twice: the rules
        known.map(lambda value: json.dumps(value).encode()),  # behind the field names
        st.lists(st.dictionaries(st.sampled_from(JOB_KEYS), _SCALARS, max_size=3), max_size=3).map(
            lambda items: b"".join(json.dumps(item).encode() + b"\n" for item in items)
        ),
        DEEP.map(str.encode),
        st.sampled_from(SEEDS),
        st.binary(max_size=300),
    )


def form_fields(path: str) -> st.SearchStrategy[dict[str, str]]:
    names = st.sampled_from(KEYS.get(path, ["x"])) | _TEXT
    return st.dictionaries(names, _TEXT, max_size=4)


#: Path parameters: an existing job (filled in by the fixture), unknown, malformed, out of range.
JOB = "{job}"
IDS = st.sampled_from([JOB, str(uuid.uuid4()), "not-an-id", "1" * 25, "%00"])

API_WRITES = [
    ("/v1/jobs", "application/json"),
    ("/v1/jobs/{id}/cancel", "application/json"),
    ("/v1/batches", "application/json"),
    ("/v1/batches", "application/x-ndjson"),
    ("/v1/fleet/pause", "application/json"),
    ("/v1/fleet/resume", "application/json"),
]
DASHBOARD_FORMS = [
    "/dashboard/login",
    "/dashboard/logout",
    "/dashboard/jobs/{id}/cancel",
    "/dashboard/jobs/{id}/retry",
    "/dashboard/fleet/pause",
    "/dashboard/fleet/resume",
]
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def written() -> dict[str, Any]:
    """What a refused request must not change."""
    with get_engine().connect() as conn:
        fleet = conn.execute(
            text(
                "SELECT name, paused, pause_code, pause_reason, paused_by, paused_at "
                "FROM fleet_controls ORDER BY name"
            )
        ).all()
        revoked = conn.execute(text("SELECT count(*) FROM revoked_sessions")).scalar_one()
    return {**row_counts(), "fleet": [tuple(row) for row in fleet], "revoked": revoked}


def check(reply: httpx.Response, before: dict[str, Any]) -> None:
    assert reply.status_code < 500, (reply.request.url, reply.text[:300])
    if 400 <= reply.status_code < 500:
        assert written() == before, (reply.request.url, reply.status_code, reply.text[:300])


@pytest.fixture
def job_id(base_url: str) -> str:
    return str(jobs.enqueue({"prompt": "a target for cancels and retries"}, dispatch=False))


@pytest.fixture
def api(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
        yield client


@pytest.fixture
def dashboard(base_url: str) -> Iterator[tuple[httpx.Client, str]]:
    """A signed-in browser and its session's CSRF token."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        assert sign_in(client).status_code == 303
        yield client, csrf_of(client.get("/dashboard/").text)


@pytest.mark.parametrize(("path", "media"), API_WRITES)
@FUZZ
@given(data=st.data(), found=IDS, key=st.none() | _TEXT.filter(str.isprintable))
def test_api_writes_never_fail_and_refusals_write_nothing(
    api: httpx.Client,
    job_id: str,
    path: str,
    media: str,
    data: st.DataObject,
    found: str,
    key: str | None,
) -> None:
    body = data.draw(json_bodies(path), label="body")
    headers = {"Content-Type": media}
    if key and key.isascii() and key == key.strip():  # httpx sends no padded header value
        headers["Idempotency-Key"] = key
    before = written()
    reply = api.post(path.format(id=found.format(job=job_id)), content=body, headers=headers)
    check(reply, before)


@pytest.mark.parametrize("path", DASHBOARD_FORMS)
@FUZZ
@given(data=st.data(), raw=st.none() | st.binary(max_size=300), found=IDS, signed=st.booleans())
def test_dashboard_forms_never_fail_and_refusals_write_nothing(
    dashboard: tuple[httpx.Client, str],
    job_id: str,
    path: str,
    data: st.DataObject,
    raw: bytes | None,
    found: str,
    signed: bool,
) -> None:
    client, csrf = dashboard
    if raw is None:  # a form as a browser sends it, with the session's token where asked
        fields = data.draw(form_fields(path), label="fields")
        extra = {"csrf": csrf, "confirmed": "yes"} if signed and path != "/dashboard/logout" else {}
        raw = urlencode({**fields, **extra}, encoding="utf-8", errors="surrogatepass").encode()
    before = written()
    reply = client.post(
        path.format(id=found.format(job=job_id)),
        content=raw,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    check(reply, before)
