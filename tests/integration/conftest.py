"""What the integration modules that talk to the HTTP API share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.producers import running_api


@pytest.fixture(scope="module")
def api_url(service_env: dict[str, str]) -> Iterator[str]:
    """A real ``imagegen api`` server for the module (a module may define its own, e.g. one
    with other settings). Settings are read per request, so each test's own apply."""
    with running_api() as url:
        yield url
