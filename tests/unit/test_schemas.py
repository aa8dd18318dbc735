import base64

import pytest

from worker.core.errors import BadInput
from worker.core.request import GenerationRequest, parse_request

PNG_URI = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()


def test_defaults_are_sent_explicitly() -> None:
    request = parse_request({"prompt": "a cat"})
    assert request.provider_body() == {
        "prompt": "a cat",
        "aspect_ratio": "1:1",
        "resolution": "1080p",
    }


@pytest.mark.parametrize(
    ("given", "sent"), [("2k", "2K"), ("4K", "4K"), ("1080P", "1080p"), ("1080p", "1080p")]
)
def test_resolution_accepts_any_case(given: str, sent: str) -> None:
    assert parse_request({"prompt": "x", "resolution": given}).resolution.value == sent


def test_full_request() -> None:
    request = parse_request(
        {
            "prompt": "x",
            "images": ["https://example.com/a.png", PNG_URI],
            "aspect_ratio": "auto",
            "seed": 2147483647,
        }
    )
    assert isinstance(request, GenerationRequest)
    assert request.provider_body()["images"][1] == PNG_URI


@pytest.mark.parametrize(
    ("data", "field", "rule"),
    [
        ({}, "prompt", "Field required"),
        ({"prompt": ""}, "prompt", "at least 1 character"),
        ({"prompt": "   "}, "prompt", "must not be blank"),
        ({"prompt": "x" * 2001}, "prompt", "at most 2000 characters"),
        ({"prompt": 5}, "prompt", "valid string"),
        ({"prompt": "x", "aspect_ratio": "5:4"}, "aspect_ratio", "'1:1'"),
        ({"prompt": "x", "resolution": "8K"}, "resolution", "'1080p'"),
        ({"prompt": "x", "seed": 0}, "seed", "greater than or equal to 1"),
        ({"prompt": "x", "seed": 2147483648}, "seed", "less than or equal to 2147483647"),
        ({"prompt": "x", "seed": "abc"}, "seed", "valid integer"),
        ({"prompt": "x", "images": []}, "images", "at least 1 item"),
        ({"prompt": "x", "images": ["https://example.com/a.png"] * 8}, "images", "at most 7"),
        ({"prompt": "x", "images": ["http://example.com/a.png"]}, "images", "scheme must be https"),
        ({"prompt": "x", "images": ["https://127.0.0.1/a.png"]}, "images", "private, loopback"),
        ({"prompt": "x", "images": ["https://10.1.2.3/a.png"]}, "images", "private, loopback"),
        ({"prompt": "x", "images": ["https://localhost/a.png"]}, "images", "local or private"),
        ({"prompt": "x", "images": ["https://[::1]/a.png"]}, "images", "private, loopback"),
        ({"prompt": "x", "images": ["https://169.254.169.254/latest"]}, "images", "private"),
        ({"prompt": "x", "images": ["data:text/html;base64,PGI+"]}, "images", "data URI must be"),
        ({"prompt": "x", "images": ["data:image/png;base64,***"]}, "images", "valid base64"),
        ({"prompt": "x", "images": ["ftp://example.com/a.png"]}, "images", "https"),
        ({"prompt": "x", "colour": "red"}, "colour", "not a known field"),
    ],
)
def test_bad_input_names_field_and_rule(data: dict, field: str, rule: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_request(data)
    assert any(f.startswith(field) and rule in r for f, r in caught.value.problems), (
        caught.value.problems
    )


def test_not_an_object() -> None:
    with pytest.raises(BadInput, match="body: must be a JSON object"):
        parse_request(["prompt"])


def test_oversized_body() -> None:
    huge = "data:image/png;base64," + "A" * (21 * 1024 * 1024)
    with pytest.raises(BadInput, match="body: must be at most 20971520 bytes"):
        parse_request({"prompt": "x", "images": [huge]})
