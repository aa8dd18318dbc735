"""A pause on a refused key reads "provider answered" once."""

from __future__ import annotations

import pytest

from worker.core.errors import AuthenticationFailed, ProviderError
from worker.store.fleet import refusal_text


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (
            ProviderError(
                "provider answered HTTP 403 Forbidden: insufficient balance", status_code=403
            ),
            "provider answered HTTP 403 Forbidden: insufficient balance",
        ),
        (
            AuthenticationFailed("invalid key", status_code=401),
            "provider answered HTTP 401: invalid key",
        ),
        (ProviderError("no balance left"), "provider answered no balance left"),
    ],
)
def test_the_prefix_is_said_once(error: ProviderError, text: str) -> None:
    assert refusal_text(error) == text
    assert refusal_text(error).count("provider answered") == 1
