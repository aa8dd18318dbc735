from datetime import UTC, datetime, timedelta

import pytest

from worker.core.errors import BadInput
from worker.core.timespec import parse_duration, parse_since

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "d", "30 days", "-1d", "0d", "1y", ""])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_duration(text, field="older_than")
    assert caught.value.problems[0][0] == "older_than"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("2026-11-24T06:00:00Z", datetime(2026, 11, 24, 6, tzinfo=UTC)),
        ("2026-11-24T06:00:00", datetime(2026, 11, 24, 6, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-24", datetime(2026, 11, 24, tzinfo=UTC)),
    ],
)
def test_since(text: str, expected: datetime) -> None:
    assert parse_since(text, now=NOW) == expected


def test_since_refuses_what_is_neither() -> None:
    with pytest.raises(BadInput, match="ISO 8601"):
        parse_since("yesterday", now=NOW)
