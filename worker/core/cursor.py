"""Opaque cursors of keyset pagination: the sort key of the last row of a page.

A cursor is URL-safe base64 of a small JSON list (a timestamp and an id); callers pass it back
as it is. A cursor that does not decode is refused (422, ``cursor``), never read as the first
page, so a client cannot loop over page one forever.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime

from worker.core.errors import BadInput

_RULE = "must be a next_cursor value given by this API"


def encode(at: datetime, row_id: uuid.UUID | str) -> str:
    raw = json.dumps([at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(value: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (timestamp, id) a cursor holds; None for no cursor; :class:`BadInput` otherwise."""
    if not value:
        return None
    try:
        padded = value + "=" * (-len(value) % 4)
        stamp, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at = datetime.fromisoformat(stamp)
        return (at if at.tzinfo else at.replace(tzinfo=UTC)), uuid.UUID(row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadInput([("cursor", _RULE)]) from None
