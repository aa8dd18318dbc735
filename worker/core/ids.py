"""Ids as people type them: a full UUID, or its first characters (the 8 the dashboard and
``imagegen jobs list`` show).

A prefix of hex digits (dashes optional, at least :data:`MIN_PREFIX` of them) names the ids
between its lowest and highest completion (:func:`id_range`), which the primary key's index
answers with one range scan. The store looks the range up; the service resolves it to one id,
raises :class:`~worker.core.errors.AmbiguousId` listing the candidates when it names several
(409), and not found (404) when it names none.
"""

from __future__ import annotations

import re
import uuid

MIN_PREFIX = 8
#: How many candidates an ambiguous prefix lists.
MAX_CANDIDATES = 10
_HEX = re.compile(r"^[0-9a-f]+$")


def id_range(value: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(lowest, highest) UUID starting with ``value``; None when it is no id or prefix."""
    digits = value.strip().lower().replace("-", "")
    if not MIN_PREFIX <= len(digits) <= 32 or not _HEX.match(digits):
        return None
    try:  # a full id must also be a well-formed one (dashes in their places)
        full = uuid.UUID(value.strip()) if len(digits) == 32 else None
    except ValueError:
        return None
    if full is not None:
        return full, full
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def short(value: uuid.UUID | str) -> str:
    """The 8 characters shown for an id."""
    return str(value)[:MIN_PREFIX]
