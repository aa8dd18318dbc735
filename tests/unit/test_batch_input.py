"""Reading a batch file: every bad line is reported with its number, field and rule."""

import json

import pytest

from worker.core.batch_input import BatchItem, check_items, parse_jsonl, parse_list
from worker.core.errors import BadInput, BadLines
from worker.core.request import parse_request


def lines(*objects: object) -> list[str]:
    return [o if isinstance(o, str) else json.dumps(o) for o in objects]


def test_valid_lines_keep_order_refs_and_skip_blank_lines() -> None:
    items = parse_jsonl(
        lines({"prompt": "a", "ref": "r1"}, "", "  ", {"prompt": "b", "resolution": "4k"}),
        max_jobs=10,
    )
    assert [(i.request.prompt, i.ref) for i in items] == [("a", "r1"), ("b", None)]
    assert items[1].request.resolution.value == "4K"


def test_every_bad_line_is_reported_with_its_number() -> None:
    given = lines(
        {"prompt": "ok", "ref": "x"},
        {"prompt": ""},
        "{not json",
        [1, 2],
        {"prompt": "y", "seed": 0, "aspect_ratio": "5:4"},
        "",
        {"prompt": "z", "ref": "x"},
        {"prompt": "w", "callback_url": "https://a.b"},
        {"prompt": "v", "ref": 5},
    )
    with pytest.raises(BadLines) as caught:
        parse_jsonl(given, max_jobs=100)
    found = [(line, field) for line, field, _ in caught.value.lines]
    assert found == [
        (2, "prompt"),
        (3, "json"),
        (4, "line"),
        (5, "aspect_ratio"),
        (5, "seed"),
        (7, "ref"),
        (8, "callback_url"),
        (9, "ref"),
    ]
    rules = {(line, field): rule for line, field, rule in caught.value.lines}
    assert rules[(7, "ref")] == "duplicates the ref of line 1"
    assert rules[(8, "callback_url")] == "is not a known field"
    assert "line 3: json: is not valid JSON" in caught.value.message


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        ([], "must contain at least one job"),
        (["", "   "], "must contain at least one job"),
        (lines(*[{"prompt": "p"}] * 4), "must contain at most 3 jobs"),
    ],
)
def test_batch_size_bounds(given: list[str], rule: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_jsonl(given, max_jobs=3)
    assert caught.value.problems == [("body", rule)]


def test_bytes_lines_and_invalid_utf8() -> None:
    with pytest.raises(BadLines) as caught:
        parse_jsonl([b'{"prompt": "a"}', b'{"prompt": "\xff"}'], max_jobs=5)
    assert [(line, field) for line, field, _ in caught.value.lines] == [(2, "json")]


def test_a_json_list_uses_positions_as_line_numbers() -> None:
    with pytest.raises(BadLines) as caught:
        parse_list([{"prompt": "a"}, {"prompt": "b", "seed": "x"}], max_jobs=5)
    assert caught.value.lines[0][:2] == (2, "seed")
    with pytest.raises(BadInput):
        parse_list({"prompt": "a"}, max_jobs=5)


def test_validated_items_are_checked_as_a_batch() -> None:
    item = BatchItem(parse_request({"prompt": "a"}), "same")
    with pytest.raises(BadLines) as caught:
        check_items([item, item], max_jobs=5)
    assert caught.value.lines == [(2, "ref", "duplicates the ref of line 1")]
    assert check_items([item], max_jobs=1) == [item]
