"""Every API call as data (method, path, body, whether repeating it is safe): what ``Client``
and ``AsyncClient`` both send, so the two differ only in how they wait."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

#: ``Content-Type`` of a JSONL batch file.
JSONL = "application/x-ndjson"
Params = list[tuple[str, str | int | float | bool | None]]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    #: Repeating it cannot do the work twice (a read, a cancel, a POST with an idempotency key).
    safe: bool
    params: Params = field(default_factory=list)
    json: Any = None
    #: A file sent as the body (opened again for each try).
    file: Path | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def new_key() -> str:
    """An idempotency key for a call whose caller gave none: every try of this one call
    carries it, so a retry after a lost answer gets the first outcome back."""
    return str(uuid.uuid4())


def _value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query(filters: Mapping[str, Any]) -> Params:
    """Query parameters: None left out, lists repeated, ``metadata`` as ``metadata.KEY=VALUE``."""
    params: Params = []
    for name, value in filters.items():
        if value is None:
            continue
        if name == "metadata":
            params += [(f"metadata.{k}", _value(v)) for k, v in value.items()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            params += [(name, _value(v)) for v in value]
        else:
            params.append((name, _value(value)))
    return params


def create_job(fields: Mapping[str, Any], idempotency_key: str | None) -> Call:
    body = {k: v for k, v in fields.items() if v is not None}
    key = idempotency_key or new_key()
    return Call("POST", "/v1/jobs", True, json=body, headers={"Idempotency-Key": key})


def job(job_id: str, action: str = "") -> Call:
    """``GET /v1/jobs/{id}``, or ``POST`` to one of its actions (``cancel``: safe, ending an
    ended job changes nothing; ``retry``: not safe, each retry is a new paid generation)."""
    if not action:
        return Call("GET", f"/v1/jobs/{job_id}", True)
    return Call("POST", f"/v1/jobs/{job_id}/{action}", action == "cancel")


def list_jobs(filters: Mapping[str, Any], cursor: str | None) -> Call:
    return Call("GET", "/v1/jobs", True, params=query({**filters, "cursor": cursor}))


def create_batch(
    items: Iterable[Mapping[str, Any]] | None,
    path: str | Path | None,
    options: Mapping[str, Any],
    idempotency_key: str | None,
) -> Call:
    """A list of jobs as one JSON body, or a JSONL file streamed as it is (options then go in
    the query string; ``metadata`` as JSON)."""
    if (items is None) == (path is None):
        raise TypeError("give either items or path")
    headers = {"Idempotency-Key": idempotency_key or new_key()}
    given = {k: v for k, v in options.items() if v is not None}
    if items is not None:
        return Call(
            "POST", "/v1/batches", True, json={"jobs": list(items), **given}, headers=headers
        )
    if "metadata" in given:
        given["metadata"] = json.dumps(given["metadata"])
    return Call(
        "POST",
        "/v1/batches",
        True,
        params=[(k, _value(v)) for k, v in given.items()],
        file=Path(path),  # type: ignore[arg-type]
        headers={**headers, "Content-Type": JSONL},
    )


def batch(batch_id: str, action: str = "", params: Params | None = None) -> Call:
    """``GET /v1/batches/{id}`` (or ``/manifest``), or ``POST`` to ``cancel`` (safe: cancelling
    twice is cancelling once) or ``retry`` (not safe)."""
    if action in ("", "manifest"):
        return Call("GET", f"/v1/batches/{batch_id}/{action}".rstrip("/"), True)
    return Call("POST", f"/v1/batches/{batch_id}/{action}", action == "cancel", params=params or [])


def list_batches(filters: Mapping[str, Any], cursor: str | None) -> Call:
    return Call("GET", "/v1/batches", True, params=query({**filters, "cursor": cursor}))


def fleet(action: str = "", reason: str | None = None) -> Call:
    """The fleet's state, or pausing / resuming submissions (both idempotent)."""
    if not action:
        return Call("GET", "/v1/fleet", True)
    body = {"reason": reason} if reason else None
    return Call("POST", f"/v1/fleet/{action}", True, json=body)


def list_deliveries(filters: Mapping[str, Any], cursor: str | None) -> Call:
    return Call("GET", "/v1/webhooks/deliveries", True, params=query({**filters, "cursor": cursor}))


def redeliver(delivery_id: str) -> Call:
    """Safe to repeat: a second attempt carries the same event id, which receivers drop as a
    duplicate (deliveries are at least once)."""
    return Call("POST", f"/v1/webhooks/deliveries/{delivery_id}/redeliver", True)
