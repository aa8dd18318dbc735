"""Simulator config: latency specs, keys, run-time updates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simulator.config import (
    DEFAULT_LATENCY,
    LatencyRange,
    SimulatorConfig,
    instant_latency,
    parse_latency,
)


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        (["1080p=1-3"], {"1080p": LatencyRange(1, 3)}),
        (["4K=0"], {"4K": LatencyRange(0, 0)}),
        (["2k=0.5-1.5", "4k=2"], {"2K": LatencyRange(0.5, 1.5), "4K": LatencyRange(2, 2)}),
        (["*=0"], instant_latency()),
        (["0.1-0.2"], {name: LatencyRange(0.1, 0.2) for name in ("1080p", "2K", "4K")}),
    ],
)
def test_parse_latency(specs: list[str], expected: dict[str, LatencyRange]) -> None:
    assert parse_latency(specs) == expected


@pytest.mark.parametrize("spec", ["8K=1", "1080p=3-1", "1080p=-1", "1080p=fast", "1080p=1-x"])
def test_parse_latency_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_latency([spec])


def test_partial_latency_keeps_defaults() -> None:
    config = SimulatorConfig(latency={"4k": LatencyRange(0, 0)})

    assert config.latency == {**DEFAULT_LATENCY, "4K": LatencyRange(0, 0)}


@pytest.mark.parametrize(
    ("accepted", "revoked", "key", "ok"),
    [
        ((), (), "sk-anything", True),
        ((), (), "pk-anything", False),
        ((), (), None, False),
        ((), (), "", False),
        (("sk-a",), (), "sk-a", True),
        (("sk-a",), (), "sk-b", False),
        ((), ("sk-old",), "sk-old", False),
        (("sk-a",), ("sk-a",), "sk-a", False),
    ],
)
def test_accepts_key(
    accepted: tuple[str, ...], revoked: tuple[str, ...], key: str | None, ok: bool
) -> None:
    config = SimulatorConfig(api_keys=frozenset(accepted), revoked_keys=frozenset(revoked))

    assert config.accepts_key(key) is ok


def test_updated_accepts_cli_shapes() -> None:
    config = SimulatorConfig(seed=3)

    new = config.updated(
        {"latency": ["4K=0"], "profile": "flaky,stuck=0.5", "revoked_keys": ["sk-x"]}
    )

    assert new.latency["4K"] == LatencyRange(0, 0)
    assert new.latency["1080p"] == config.latency["1080p"]
    assert new.profile["stuck"] == 0.5
    assert new.revoked_keys == frozenset({"sk-x"})
    assert new.seed == 3
    assert config.revoked_keys == frozenset()  # the old config is untouched


def test_updated_accepts_json_shapes() -> None:
    new = SimulatorConfig().updated({"latency": {"2k": [0, 0.1]}, "profile": {"nsfw": 1}})

    assert new.latency["2K"] == LatencyRange(0, 0.1)
    assert new.profile == {"nsfw": 1.0}


@pytest.mark.parametrize(
    "changes",
    [
        {"unknown": 1},
        {"profile": {"bogus": 0.1}},
        {"queue_s": -1},
        {"latency": {"1080p": [2, 1]}},
        {"latency": 5},
    ],
)
def test_updated_rejects(changes: dict[str, object]) -> None:
    with pytest.raises((ValueError, ValidationError)):
        SimulatorConfig().updated(changes)


def test_public_view_hides_keys() -> None:
    config = SimulatorConfig(api_keys=frozenset({"sk-secret-1"}), revoked_keys=frozenset({"sk-2"}))

    view = config.public_view()

    assert "sk-secret-1" not in repr(view) and "sk-2" not in repr(view)
    assert view["api_keys_count"] == 1 and view["revoked_keys_count"] == 1


def test_output_base_url_loses_trailing_slash() -> None:
    assert SimulatorConfig(output_base_url="http://cdn.test/").output_base_url == "http://cdn.test"
