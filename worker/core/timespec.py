"""Times as people read and write them: durations and points in time as operators type them
(``90s``, ``30m``, ``12h``, ``30d``, ``2w``, or an ISO 8601 timestamp), and the ISO 8601 text
every view writes (:func:`iso`). Pure functions; errors are :class:`BadInput` naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from worker.core.errors import BadInput

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RULE = "must be a duration like 90s, 30m, 12h, 30d or 2w"


def parse_duration(value: str, *, field: str = "duration") -> timedelta:
    """``30d`` -> 30 days. Zero and negative durations are refused."""
    match = _DURATION.match(value)
    if not match:
        raise BadInput([(field, _RULE)])
    seconds = float(match.group(1)) * _UNIT_S[match.group(2).lower()]
    if seconds <= 0:
        raise BadInput([(field, "must be longer than zero")])
    return timedelta(seconds=seconds)


def parse_since(value: str, *, now: datetime, field: str = "since") -> datetime:
    """A duration back from ``now`` (``2h``) or an absolute time (``2026-11-25T06:00:00Z``;
    a time without a zone is UTC)."""
    if _DURATION.match(value):
        return now - parse_duration(value, field=field)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadInput([(field, f"{_RULE}, or an ISO 8601 time")]) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text of a moment (None stays None): how every view writes a time."""
    return value.isoformat() if value is not None else None
