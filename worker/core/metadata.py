"""A producer's ``metadata``: a free-form JSON object kept with a job or a batch.

Echoed wherever the job or batch is shown (the API, manifests, webhooks, exports, the
dashboard) and filterable by top-level key and value (``metadata.KEY=VALUE``). The rules, each
refusal naming the field and the rule (422, CLI exit 2, nothing written):

- a JSON object whose keys are 1 to :data:`MAX_KEY_CHARS` letters, digits, ``_ . : -``
  (so ``metadata.KEY=VALUE`` can always name them);
- at most :data:`MAX_METADATA_BYTES` bytes serialized (compact JSON, UTF-8), nested at most
  :data:`MAX_DEPTH` levels;
- every text in it storable (no NUL, which ``jsonb`` refuses, no lone surrogate); numbers
  finite.

A batch item's own metadata is merged over the batch's (:func:`merged`), key by key, and the
merged object must keep to the same size.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from worker.core.errors import BadInput
from worker.core.untrusted import text_problem

MAX_METADATA_BYTES = 4096
MAX_KEY_CHARS = 64
MAX_DEPTH = 4
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_KEY_RULE = f"keys must be 1 to {MAX_KEY_CHARS} letters, digits or _ . : -"


def metadata_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a metadata object, or None."""
    if not isinstance(value, dict):
        return "must be a JSON object"
    bad_key = next((key for key in value if not KEY_PATTERN.match(str(key))), None)
    if bad_key is not None:
        return f"{_KEY_RULE} (not {str(bad_key)[:80]!r})"
    for problem in _value_problems(value, depth=1):
        return problem
    size = serialized_size(value)
    if size > MAX_METADATA_BYTES:
        return f"must be at most {MAX_METADATA_BYTES} bytes as JSON (is {size})"
    return None


def _value_problems(value: Any, *, depth: int) -> Iterator[str]:
    if isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            yield f"must not nest deeper than {MAX_DEPTH} levels"
            return
        children = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        for key, child in children:
            if isinstance(key, str) and (problem := text_problem(key)):
                yield f"keys {problem}"
            yield from _value_problems(child, depth=depth + 1)
    elif isinstance(value, str):
        if problem := text_problem(value):
            yield f"texts {problem}"
    elif isinstance(value, float) and not math.isfinite(value):
        yield "numbers must be finite"
    elif value is not None and not isinstance(value, bool | int | float):
        yield "values must be JSON (objects, lists, texts, numbers, true, false, null)"


def serialized_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def check_metadata(value: Any, *, field: str = "metadata") -> dict[str, Any] | None:
    """``value`` if it is valid metadata (None stays None), else :class:`BadInput`."""
    if value is None:
        return None
    if (problem := metadata_problem(value)) is not None:
        raise BadInput([(field, problem)])
    return dict(value)


def merged(base: Mapping[str, Any] | None, own: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A batch item's metadata: its own keys over the batch's (None when neither has any)."""
    if base is None and own is None:
        return None
    return {**(base or {}), **(own or {})}


def parse_filters(pairs: Mapping[str, str]) -> dict[str, str]:
    """``metadata.KEY=VALUE`` query parameters (already split into KEY -> VALUE), checked."""
    problems = [(f"metadata.{key}", _KEY_RULE) for key in pairs if not KEY_PATTERN.match(key)]
    problems += [
        (f"metadata.{key}", problem)
        for key, value in pairs.items()
        if (problem := text_problem(value, 1024))
    ]
    if problems:
        raise BadInput(problems)
    return dict(pairs)


def filter_values(value: str) -> list[Any]:
    """What a filter's text matches: the text itself, and the JSON number, ``true``,
    ``false`` or ``null`` it spells (``?metadata.n=42`` finds ``{"n": 42}`` and ``{"n": "42"}``)."""
    found: list[Any] = [value]
    try:
        parsed = json.loads(value)
    except ValueError:
        return found
    if parsed is None or isinstance(parsed, bool | int | float):
        found.append(parsed)
    return found
