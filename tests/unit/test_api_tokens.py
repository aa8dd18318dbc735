"""``IMAGEGEN_API_TOKENS``: every token at least 32 characters, or no process starts."""

from __future__ import annotations

import pytest

from worker.core.errors import ConfigurationError
from worker.core.settings import get_settings, reset_settings

LONG = "t" * 32


@pytest.fixture(autouse=True)
def fresh_settings() -> None:
    reset_settings()


@pytest.mark.parametrize(
    ("tokens", "accepted"),
    [
        (LONG, [LONG]),
        (f" {LONG} , {'u' * 64} ,", [LONG, "u" * 64]),
        ("", []),
    ],
)
def test_long_tokens_are_accepted(
    monkeypatch: pytest.MonkeyPatch, tokens: str, accepted: list[str]
) -> None:
    monkeypatch.setenv("IMAGEGEN_API_TOKENS", tokens)
    assert get_settings().api_token_list == [token.encode() for token in accepted]


@pytest.mark.parametrize(
    ("tokens", "entries"),
    [("t" * 31, "1"), (f"{LONG},tiny", "2"), (f"abc,{LONG},{'x' * 20}", "1, 3")],
)
def test_a_short_token_stops_the_process_naming_the_variable_and_the_rule(
    monkeypatch: pytest.MonkeyPatch, tokens: str, entries: str
) -> None:
    monkeypatch.setenv("IMAGEGEN_API_TOKENS", tokens)
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    message = str(caught.value)
    assert message == (
        "invalid configuration: IMAGEGEN_API_TOKENS: each token must be at least 32 characters "
        f"(too short: entry {entries} of the comma-separated list)"
    )
    assert all(token.strip() not in message for token in tokens.split(","))
