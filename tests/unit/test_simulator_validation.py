"""Submit body validation against contract section 1."""

from __future__ import annotations

import json

import pytest

from simulator.validation import MAX_BODY_BYTES, InvalidRequest, SubmitParams, parse_submit

PNG_URI = "data:image/png;base64,iVBORw0KGgo="


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_defaults() -> None:
    assert parse_submit(body(prompt="a cat")) == SubmitParams(
        prompt="a cat", aspect_ratio="1:1", resolution="1080p", seed=1, image_count=0
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"resolution": "2k"}, {"resolution": "2K"}),
        ({"resolution": "1080P"}, {"resolution": "1080p"}),
        ({"aspect_ratio": "21:9", "seed": 2**31 - 1}, {"aspect_ratio": "21:9", "seed": 2**31 - 1}),
        ({"images": ["https://example.com/a.png", PNG_URI]}, {"image_count": 2}),
        ({"aspect_ratio": None, "seed": None, "unknown": "ignored"}, {}),
    ],
)
def test_accepted(fields: dict[str, object], expected: dict[str, object]) -> None:
    params = parse_submit(body(prompt="x", **fields))

    for name, value in expected.items():
        assert getattr(params, name) == value


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "JSON"),
        (b"[1, 2]", "object"),
        (body(), "prompt"),
        (body(prompt=""), "prompt"),
        (body(prompt="   "), "prompt"),
        (body(prompt=5), "prompt"),
        (body(prompt="x" * 2001), "prompt"),
        (body(prompt="x", aspect_ratio="5:4"), "aspect_ratio"),
        (body(prompt="x", resolution="8K"), "resolution"),
        (body(prompt="x", resolution=1080), "resolution"),
        (body(prompt="x", seed=0), "seed"),
        (body(prompt="x", seed=2147483648), "seed"),
        (body(prompt="x", seed=True), "seed"),
        (body(prompt="x", seed="5"), "seed"),
        (body(prompt="x", images=[]), "images"),
        (body(prompt="x", images=["https://e.com/a.png"] * 8), "images"),
        (body(prompt="x", images="https://e.com/a.png"), "images"),
        (body(prompt="x", images=["http://e.com/a.png"]), "images[0]"),
        (body(prompt="x", images=[PNG_URI, "data:image/gif;base64,R0lG"]), "images[1]"),
        (body(prompt="x", images=["https://"]), "images[0]"),
    ],
)
def test_rejected(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_submit(raw)


def test_prompt_of_exactly_2000_characters_is_fine() -> None:
    assert len(parse_submit(body(prompt="x" * 2000)).prompt) == 2000


def test_body_over_20_mb_is_rejected() -> None:
    raw = body(prompt="x", images=["data:image/png;base64," + "A" * MAX_BODY_BYTES])

    with pytest.raises(InvalidRequest, match="body exceeds"):
        parse_submit(raw)
