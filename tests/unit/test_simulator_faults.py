"""Fault tokens, profiles and how a submit chooses its faults."""

from __future__ import annotations

import random

import pytest

from simulator.faults import (
    FAULTS,
    PRESETS,
    Stage,
    UnknownFault,
    arg_of,
    choose_faults,
    fires_on,
    in_stage,
    parse_profile,
    parse_tokens,
)

CONTRACT_FAULTS = {
    "http_401",
    "http_403",
    "http_429",
    "http_429_retry_after",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "content_policy",
    "invalid_params",
    "ghost_500",
    "ghost_slow",
    "failed",
    "stuck",
    "no_output",
    "nsfw",
    "poll_500",
    "poll_429",
    "urls_list",
    "error_empty",
    "date_rfc3339",
    "nsfw_null",
    "nsfw_empty",
    "status_alias",
    "output_expired",
    "output_slow",
    "output_truncated",
    "output_mislabelled",
    "multi_output",
}


def test_registry_covers_the_contract() -> None:
    assert set(FAULTS) >= CONTRACT_FAULTS


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a cat", {}),
        ("a cat [sim:http_500]", {"http_500": None}),
        ("a cat [sim:http_500] [sim:urls_list]", {"http_500": None, "urls_list": None}),
        ("[sim:failed=CreationPolicyViolation] x", {"failed": "CreationPolicyViolation"}),
        ("x [sim:failed=1200]", {"failed": "1200"}),
        ("x [sim:output_mislabelled=text/html]", {"output_mislabelled": "text/html"}),
        ("[sim:poll_500=2][sim:poll_500=5]", {"poll_500": "2"}),  # the first one wins
        ("[sim: http_500] [SIM:http_500] sim:http_500", {}),  # not tokens
    ],
)
def test_parse_tokens(prompt: str, expected: dict[str, str | None]) -> None:
    assert parse_tokens(prompt) == expected


def test_tokens_keep_prompt_order() -> None:
    assert list(parse_tokens("[sim:nsfw] [sim:http_502] [sim:stuck]")) == [
        "nsfw",
        "http_502",
        "stuck",
    ]


def test_unknown_token_is_an_error() -> None:
    with pytest.raises(UnknownFault, match="http_999"):
        parse_tokens("a cat [sim:http_999]")


def test_parse_profile_merges_presets_and_items() -> None:
    profile = parse_profile("flaky, http_500=0.5,stuck=0")

    assert profile == {**PRESETS["flaky"], "http_500": 0.5, "stuck": 0.0}


@pytest.mark.parametrize(
    "spec", ["nope", "bogus=0.1", "http_500=2", "http_500=-0.1", "http_500=abc"]
)
def test_parse_profile_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_profile(spec)


def test_presets_only_name_registered_faults() -> None:
    for preset in PRESETS.values():
        assert set(preset) <= set(FAULTS)


def test_choose_faults_forced_then_drawn() -> None:
    chosen = choose_faults(
        "x [sim:nsfw=1]", {"http_500": 1.0, "stuck": 0.0, "nsfw": 1.0}, random.Random(1)
    )

    assert chosen == {"nsfw": "1", "http_500": None}


def test_choose_faults_is_reproducible_and_respects_probability() -> None:
    profile = {"http_500": 0.3}

    def draws(seed: int) -> list[bool]:
        rng = random.Random(seed)
        return ["http_500" in choose_faults("x", profile, rng) for _ in range(1000)]

    assert draws(5) == draws(5)
    assert 250 < sum(draws(5)) < 350


def test_arg_defaults_and_stages() -> None:
    faults = {"poll_500": None, "failed": "1200", "http_429": None}

    assert arg_of(faults, "poll_500") == "1"
    assert arg_of(faults, "failed") == "1200"
    assert arg_of(faults, "http_429") is None
    assert in_stage(faults, Stage.SUBMIT) == ["http_429"]


@pytest.mark.parametrize(
    ("arg", "attempts_firing"),
    [(None, [1]), ("3", [1, 2, 3]), ("0", []), ("always", [1, 2, 3, 4, 5]), ("junk", [1])],
)
def test_counted_faults(arg: str | None, attempts_firing: list[int]) -> None:
    faults = {"poll_429": arg}

    assert [n for n in range(1, 6) if fires_on(faults, "poll_429", n)] == attempts_firing
    assert not fires_on(faults, "poll_500", 1)
