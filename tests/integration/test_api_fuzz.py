"""A schema-driven fuzz of the OpenAPI description (schemathesis): no input gives a 5xx.

Generated bodies, parameters and headers, valid and invalid, against the real app over HTTP
and real Postgres. Bounded (a few dozen examples per operation) to stay well under a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api.app import create_app
from tests.producers import AUTH, configure, running_api

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


@pytest.fixture(scope="module")
def api_url(service_env: dict[str, str]) -> Iterator[str]:
    with running_api() as url:
        yield url


@pytest.fixture
def base_url(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> str:
    configure(monkeypatch)
    return api_url


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTH, checks=[not_a_server_error])
