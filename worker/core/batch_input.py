"""Reading a batch: JSONL lines or a JSON list of job objects, every line validated first.

Each job is a generation request (``core.request``) plus an optional client-side ``ref``
(unique within the batch). Every problem of every line is collected with its line number, the
field and the rule, and raised together, so a pipeline fixes its file in one round.

A JSONL line is first tried on a fast path: pydantic validates it straight from its JSON, ref
included, in one call (about half the cost of decoding it and then validating the fields).
Only a line that passes every rule the full path applies is taken that way; anything else
(a problem, an unusual ref, a body that might be near the size limit) goes through the full
path, which decides and words the problems.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import Field, ValidationError

from worker.core.errors import BadInput, BadLines
from worker.core.gcpause import cyclic_gc_paused
from worker.core.metadata import metadata_problem
from worker.core.request import MAX_BODY_BYTES, GenerationRequest, parse_request
from worker.core.untrusted import load_json, text_problem

MAX_REF_CHARS = 200
#: JSON escapes turn one character into at most 12 bytes (a surrogate pair as two \\uXXXX).
_JSON_BYTES_PER_CHAR = 12


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch: the validated request, the client's reference for it and its own
    metadata (merged over the batch's when written)."""

    request: GenerationRequest
    ref: str | None = None
    metadata: dict[str, Any] | None = None


class _Line(GenerationRequest):
    """A whole JSONL line validated at once: the request, and the ref it carried (left out of
    dumps; the item keeps the ref, see :class:`BatchItem`)."""

    ref: Any = Field(default=None, exclude=True, repr=False)
    metadata: Any = Field(default=None, exclude=True, repr=False)


class _NotJson:
    def __init__(self, rule: str) -> None:
        self.rule = rule


def parse_jsonl(lines: Iterable[bytes | str], *, max_jobs: int) -> list[BatchItem]:
    """Validate a JSONL document (blank lines skipped, still counted for line numbers)."""
    numbered = ((number, line) for number, line in enumerate(lines, 1) if line.strip())
    return _validate(numbered, max_jobs, _line_item)


def parse_list(items: Any, *, max_jobs: int) -> list[BatchItem]:
    """Validate a JSON list of job objects; "line" numbers are 1-based list positions."""
    if not isinstance(items, list):
        raise BadInput([("jobs", "must be a list of job objects")])
    return _validate(enumerate(items, 1), max_jobs, _item)


def check_items(items: list[BatchItem], *, max_jobs: int) -> list[BatchItem]:
    """Check already validated items as a batch: a size within bounds, no ref used twice."""
    if not items:
        raise BadInput([("body", "must contain at least one job")])
    if len(items) > max_jobs:
        raise BadInput([("body", f"must contain at most {max_jobs} jobs")])
    first_line_of: dict[str, int] = {}
    problems = [
        (number, field, rule)
        for number, item in enumerate(items, 1)
        if item.ref
        for field, rule in _duplicate(first_line_of, item.ref, number)
    ]
    if problems:
        raise BadLines(problems)
    return items


def _decode(line: bytes | str) -> Any:
    try:
        return load_json(line, field="json")
    except BadInput as exc:
        return _NotJson(exc.problems[0][1])


def _validate(
    numbered: Iterable[tuple[int, Any]],
    max_jobs: int,
    to_item: Callable[[Any], tuple[BatchItem | None, list[tuple[str, str]]]],
) -> list[BatchItem]:
    items: list[BatchItem] = []
    problems: list[tuple[int, str, str]] = []
    first_line_of: dict[str, int] = {}
    with cyclic_gc_paused():
        for number, data in _capped(numbered, max_jobs):
            item, found = to_item(data)
            if item is not None and item.ref is not None:
                found += _duplicate(first_line_of, item.ref, number)
            if found:
                problems += [(number, field, rule) for field, rule in found]
            if item is not None:
                items.append(item)
    if problems:
        raise BadLines(problems)
    if not items:
        raise BadInput([("body", "must contain at least one job")])
    return items


def _capped(numbered: Iterable[tuple[int, Any]], max_jobs: int) -> Iterator[tuple[int, Any]]:
    for count, pair in enumerate(numbered, 1):
        if count > max_jobs:
            raise BadInput([("body", f"must contain at most {max_jobs} jobs")])
        yield pair


def _line_item(line: bytes | str) -> tuple[BatchItem | None, list[tuple[str, str]]]:
    item = _quick(line)
    return (item, []) if item is not None else _item(_decode(line))


def _quick(line: bytes | str) -> BatchItem | None:
    """The line as an item if it passes every rule at first sight, else None (the full path
    then decides: same rules, its own wording of the problems)."""
    try:
        parsed = _Line.model_validate_json(line)
    except ValidationError:
        return None
    ref = parsed.ref
    if ref is not None and (not isinstance(ref, str) or text_problem(ref, MAX_REF_CHARS)):
        return None
    if not _surely_small(parsed):
        return None  # the full path measures the body exactly
    metadata = parsed.metadata
    if metadata is not None and metadata_problem(metadata) is not None:
        return None
    return BatchItem(parsed, ref, metadata)


def _surely_small(request: GenerationRequest) -> bool:
    """Whether the provider body cannot exceed ``MAX_BODY_BYTES``, judged from its text alone
    (a bound: keys, punctuation and the short fields fit in the constant)."""
    images = request.images or []
    chars = len(request.prompt) + sum(len(image) for image in images) + 16 * len(images)
    return chars * _JSON_BYTES_PER_CHAR + 1024 <= MAX_BODY_BYTES


def _item(data: Any) -> tuple[BatchItem | None, list[tuple[str, str]]]:
    if isinstance(data, _NotJson):
        return None, [("json", data.rule)]
    if not isinstance(data, dict):
        return None, [("line", "must be a JSON object")]
    fields = dict(data)
    ref = fields.pop("ref", None)
    metadata = fields.pop("metadata", None)
    problems = _ref_problems(ref)
    if metadata is not None and (problem := metadata_problem(metadata)):
        problems.append(("metadata", problem))
    try:
        request = parse_request(fields)
    except BadInput as exc:
        return None, problems + exc.problems
    return (BatchItem(request, ref, metadata), []) if not problems else (None, problems)


def _ref_problems(ref: Any) -> list[tuple[str, str]]:
    if ref is None:
        return []
    if not isinstance(ref, str):
        return [("ref", "must be a string")]
    return [("ref", problem)] if (problem := text_problem(ref, MAX_REF_CHARS)) else []


def _duplicate(first_line_of: dict[str, int], ref: str, number: int) -> list[tuple[str, str]]:
    first = first_line_of.setdefault(ref, number)
    return [("ref", f"duplicates the ref of line {first}")] if first != number else []
