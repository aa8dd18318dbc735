"""The pure rules of issue 14: metadata, short ids, page cursors (tables)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from worker.core import cursor
from worker.core.errors import BadInput
from worker.core.ids import id_range
from worker.core.metadata import (
    MAX_METADATA_BYTES,
    filter_values,
    merged,
    metadata_problem,
    parse_filters,
)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({}, None),
        ({"order": "1234", "n": 3, "ok": True, "none": None, "list": [1, {"a": "b"}]}, None),
        ({"a.b:c-d_e": 1}, None),
        ([], "must be a JSON object"),
        ("text", "must be a JSON object"),
        ({"": 1}, "keys must be 1 to 64"),
        ({"k" * 65: 1}, "keys must be 1 to 64"),
        ({"a=b": 1}, "keys must be 1 to 64"),
        ({"k": "\x00"}, "texts must not contain NUL characters"),
        ({"k": {"\ud800": 1}}, "keys must be valid Unicode"),
        ({"k": float("nan")}, "numbers must be finite"),
        ({"k": {"a": {"b": {"c": {}}}}}, "must not nest deeper than 4 levels"),
        ({"k": "x" * MAX_METADATA_BYTES}, f"must be at most {MAX_METADATA_BYTES} bytes"),
        ({"k": object()}, "values must be JSON"),
    ],
)
def test_metadata_rules(value: object, problem: str | None) -> None:
    found = metadata_problem(value)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(
    ("base", "own", "result"),
    [
        (None, None, None),
        ({"a": 1}, None, {"a": 1}),
        (None, {"b": 2}, {"b": 2}),
        ({"a": 1, "b": 1}, {"b": 2}, {"a": 1, "b": 2}),
    ],
)
def test_item_metadata_is_merged_over_the_batch(base, own, result) -> None:  # type: ignore[no-untyped-def]
    assert merged(base, own) == result


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("eu", ["eu"]),
        ("42", ["42", 42]),
        ("1.5", ["1.5", 1.5]),
        ("true", ["true", True]),
        ("null", ["null", None]),
        ('"x"', ['"x"']),
        ("[1]", ["[1]"]),
    ],
)
def test_a_filter_matches_the_text_and_the_scalar_it_spells(text: str, values: list) -> None:  # type: ignore[type-arg]
    assert filter_values(text) == values


def test_filter_keys_follow_the_key_rule() -> None:
    assert parse_filters({"shop": "eu"}) == {"shop": "eu"}
    with pytest.raises(BadInput) as refused:
        parse_filters({"bad key": "1"})
    assert refused.value.problems[0][0] == "metadata.bad key"


@pytest.mark.parametrize(
    ("value", "low", "high"),
    [
        (
            "5b0c1d2e",
            "5b0c1d2e-0000-0000-0000-000000000000",
            "5b0c1d2e-ffff-ffff-ffff-ffffffffffff",
        ),
        (
            "5B0C1D2E-12",
            "5b0c1d2e-1200-0000-0000-000000000000",
            "5b0c1d2e-12ff-ffff-ffff-ffffffffffff",
        ),
        (
            "5b0c1d2e-1234-4abc-8def-0123456789ab",
            "5b0c1d2e-1234-4abc-8def-0123456789ab",
            "5b0c1d2e-1234-4abc-8def-0123456789ab",
        ),
    ],
)
def test_an_id_prefix_is_a_range_of_ids(value: str, low: str, high: str) -> None:
    assert id_range(value) == (uuid.UUID(low), uuid.UUID(high))


@pytest.mark.parametrize(
    "value", ["", "5b0c1d2", "not-an-id", "5b0c1d2g", "5b0c1d2e-1234-4abc-8def-0123456789abc"]
)
def test_what_is_no_id_prefix(value: str) -> None:
    assert id_range(value) is None


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    at, row = datetime(2026, 12, 2, 9, 30, tzinfo=UTC), uuid.uuid4()
    assert cursor.decode(cursor.encode(at, row)) == (at, row)
    assert cursor.decode(None) is None
    for bad in ("nope", "WyJ4Il0", cursor.encode(at, row)[:-3]):
        with pytest.raises(BadInput) as refused:
            cursor.decode(bad)
        assert refused.value.problems[0][0] == "cursor"
