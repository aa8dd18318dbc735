"""Input from producers, before any rule of the request applies: JSON documents and text.

Every JSON body and batch line is read by :func:`load_json`: strict UTF-8, valid JSON, nested
at most :data:`MAX_JSON_DEPTH` levels (a 100,000-deep document would otherwise exhaust the
interpreter's recursion limit, an error that is no rule of ours). Every text a producer or an
operator sends to be stored passes :func:`text_problem`: Postgres ``text`` cannot hold a NUL
character, and a lone surrogate (``"\\ud800"`` is valid JSON) cannot be encoded to UTF-8.
Each refusal is a :class:`BadInput` naming the field and the rule, answered 422 (CLI: exit 2).
Integers compared with an ``integer`` column must lie in :data:`PG_INT_MIN`..:data:`PG_INT_MAX`
(Postgres refuses the query otherwise).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator

from worker.core.errors import BadInput

#: The range of a Postgres ``integer`` column: positions and indexes outside it name no row.
PG_INT_MIN, PG_INT_MAX = -(2**31), 2**31 - 1
#: Deepest nesting of a JSON document: a batch envelope is 4 levels deep, a job 2.
MAX_JSON_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(raw: bytes | str, *, field: str = "body") -> Any:
    """The JSON document ``raw``, or :class:`BadInput` saying which rule it breaks."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            rule = f"must be UTF-8 (invalid byte at position {exc.start})"
            raise BadInput([(field, rule)]) from None
    if not raw.strip():
        raise BadInput([(field, "must not be empty")])
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        rule = f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise BadInput([(field, rule)]) from None
    except RecursionError:
        data = _TOO_DEEP
    if data is _TOO_DEEP or (_may_be_deep(raw) and _depth(data) > MAX_JSON_DEPTH):
        raise BadInput([(field, f"must not nest deeper than {MAX_JSON_DEPTH} levels")])
    return data


_TOO_DEEP = object()


def _may_be_deep(raw: str) -> bool:
    """False when the text has too few brackets to be deep (a count at C speed)."""
    return raw.count("[") + raw.count("{") > MAX_JSON_DEPTH


def _depth(data: Any) -> int:
    """How deeply lists and objects nest in ``data`` (iteratively: no recursion limit)."""
    deepest = 0
    pending = [(data, 1)]
    while pending:
        value, level = pending.pop()
        if not isinstance(value, dict | list):
            continue
        deepest = max(deepest, level)
        children = value.values() if isinstance(value, dict) else value
        pending.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def text_problem(value: str, max_chars: int | None = None) -> str | None:
    """Why a text cannot be stored as it is (its length, a NUL, a lone surrogate), or None."""
    if max_chars is not None and not 1 <= len(value) <= max_chars:
        return f"must be 1 to {max_chars} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    if _SURROGATE.search(value):
        return "must be valid Unicode (no lone surrogates)"
    return None


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


#: A string field of a request body that will be stored: refused with a NUL or a lone surrogate.
StoredText = Annotated[str, AfterValidator(_storable)]
