"""The reader of untrusted JSON and the rule for stored text: a table of inputs and rules."""

from __future__ import annotations

import pytest

from worker.core.errors import BadInput
from worker.core.untrusted import MAX_JSON_DEPTH, load_json, text_problem


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "must not nest deeper than 32 levels"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "must not nest deeper"),
        (b'{"a": "\xff"}', "must be UTF-8 (invalid byte at position 7)"),
        (b"  \n", "must not be empty"),
        ('{"a": }', "is not valid JSON (Expecting value at line 1 column 7)"),
    ],
)
def test_refused_documents_name_the_body_and_the_rule(raw: bytes | str, rule: str) -> None:
    with pytest.raises(BadInput) as caught:
        load_json(raw)
    [(field, found)] = caught.value.problems
    assert field == "body" and found.startswith(rule)


@pytest.mark.parametrize(
    "raw",
    [
        "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH,
        '{"jobs": [{"prompt": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}',
        '"caf\u00e9"',
        "12",
    ],
)
def test_accepted_documents(raw: str) -> None:
    assert load_json(raw.encode()) == load_json(raw)


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("fine", None),
        ("a\x00b", "must not contain NUL characters"),
        ("a\ud800b", "must be valid Unicode (no lone surrogates)"),
        ("", None),
    ],
)
def test_text_problem(value: str, rule: str | None) -> None:
    assert text_problem(value) == rule


def test_text_problem_with_a_length() -> None:
    assert text_problem("", 5) == "must be 1 to 5 characters"
    assert text_problem("x" * 6, 5) == "must be 1 to 5 characters"
    assert text_problem("x" * 5, 5) is None
