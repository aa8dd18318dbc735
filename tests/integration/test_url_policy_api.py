"""Every spelling of a private address and every host name the resolver cannot take is refused
at the door, through the real API: 422 naming the field, nothing written. The same policy the
worker applies to the provider's output URLs and the webhook sender at connect time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.producers import AUTH, configure, row_counts

pytestmark = pytest.mark.integration

STRICT = {"IMAGEGEN_ALLOW_PRIVATE_URLS": "false", "IMAGEGEN_ALLOW_HTTP_CALLBACKS": "false"}
HOSTS = [
    ("[::127.0.0.1]", "private"),
    ("[64:ff9b::7f00:1]", "private"),
    ("[::ffff:10.0.0.1]", "private"),
    ("2130706433", "private"),
    ("0x7f000001", "private"),
    ("0177.0.0.1", "private"),
    ("127.1", "private"),
    ("xn--", "valid host name"),
    ("xn--zz.example.com", "xn--"),
    ("a" * 64 + ".example.com", "valid host name"),
]


@pytest.fixture
def api(configured: None, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[httpx.Client]:
    configure(monkeypatch, **STRICT)
    with httpx.Client(base_url=api_url, headers=AUTH, timeout=60) as client:
        yield client


@pytest.mark.parametrize(("host", "rule"), HOSTS)
@pytest.mark.parametrize("field", ["callback_url", "images"])
def test_refused_at_enqueue(api: httpx.Client, host: str, rule: str, field: str) -> None:
    url = f"https://{host}/h.png"
    body: dict[str, Any] = {"prompt": "a cat"}
    body[field] = url if field == "callback_url" else [url]
    before = row_counts()
    reply = api.post("/v1/jobs", json=body)
    assert reply.status_code == 422, reply.text[:300]
    errors = reply.json()["errors"]
    assert any(e["field"] == field and rule in e["rule"] for e in errors), errors
    assert row_counts() == before
