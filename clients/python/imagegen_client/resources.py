"""What the API answers, as frozen dataclasses mirroring its schema (``/openapi.json``).

Built with ``from_api``: fields the client does not know yet are ignored (a newer server never
breaks an older client) and kept, with everything else, in ``raw``; fields an older server does
not send take their defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

#: A job in one of these states will not change any more.
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})

T = TypeVar("T")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp of the API (always with its offset) as an aware datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _known(cls: type[T], data: Mapping[str, Any], **converted: Any) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    given = {k: v for k, v in data.items() if k in names}
    return cls(**{**given, **converted, "raw": dict(data)})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: the field, the rule it broke (and the batch line)."""

    field: str
    rule: str
    line: int | None = None


@dataclass(frozen=True)
class JobError:
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Timings:
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    generated_at: datetime | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    queued_s: float | None = None
    generation_s: float | None = None
    transfer_s: float | None = None
    total_s: float | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Timings:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for name, value in values.items():
            if name.endswith("_at"):
                values[name] = parse_time(value)
        return cls(**values)


@dataclass(frozen=True)
class Image:
    """A stored image. ``url`` is a presigned link that stops working at ``expires_at``;
    ``Client.download`` fetches a fresh one through the job when it has expired."""

    index: int
    sha256: str
    bytes: int
    url: str | None = None
    expires_at: datetime | None = None
    bucket: str | None = None
    key: str | None = None
    content_type: str = "image/png"
    width: int | None = None
    height: int | None = None
    nsfw: bool | None = None
    #: The job the image belongs to (set by the client, for refreshing the link).
    job_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any], job_id: str | None = None) -> Image:
        return _known(cls, data, expires_at=parse_time(data.get("expires_at")), job_id=job_id)


@dataclass(frozen=True)
class Job:
    """A job as ``GET /v1/jobs/{id}`` shows it."""

    id: str
    status: str
    ref: str | None = None
    batch_id: str | None = None
    priority: str | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    error: JobError | None = None
    attempts: int = 0
    polls: int = 0
    transfer_attempts: int = 0
    ambiguous_submits: int = 0
    timings: Timings = field(default_factory=Timings)
    images: tuple[Image, ...] = ()
    metadata: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """The job has ended (succeeded, failed or cancelled)."""
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Job:
        error = data.get("error")
        return _known(
            cls,
            data,
            error=JobError(error.get("code"), error.get("message")) if error else None,
            timings=Timings.from_api(data.get("timings") or {}),
            images=tuple(Image.from_api(i, job_id=data["id"]) for i in data.get("images") or ()),
        )


@dataclass(frozen=True)
class Batch:
    """A batch as ``GET /v1/batches/{id}`` shows it: counts by state, progress, ETA."""

    id: str
    total: int
    name: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    done: int = 0
    progress: float = 0.0
    completed: bool = False
    rate_per_s: float = 0.0
    eta_s: float | None = None
    elapsed_s: float = 0.0
    callback_url: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    metadata: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Batch:
        return _known(
            cls,
            data,
            created_at=parse_time(data.get("created_at")),
            completed_at=parse_time(data.get("completed_at")),
        )


@dataclass(frozen=True)
class BatchAction:
    """What cancelling or retrying a batch did: ``jobs`` cancelled (or sent back to the
    queue) by this call, and the batch after it."""

    jobs: int
    batch: Batch
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> BatchAction:
        return _known(cls, data, batch=Batch.from_api(data["batch"]))


@dataclass(frozen=True)
class ManifestImage:
    index: int
    sha256: str
    bytes: int
    bucket: str | None = None
    key: str | None = None
    width: int | None = None
    height: int | None = None
    content_type: str = "image/png"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ManifestImage:
        return _known(cls, data)


@dataclass(frozen=True)
class ManifestLine:
    """One job of a batch manifest, in the batch's order. No download links: fetch the job
    (``client.jobs.get(line.job_id)``) for those."""

    index: int
    job_id: str
    status: str
    ref: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    images: tuple[ManifestImage, ...] = ()
    metadata: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> ManifestLine:
        images = tuple(ManifestImage.from_api(i) for i in data.get("images") or ())
        return _known(cls, data, images=images)


@dataclass(frozen=True)
class DeliveryAttempt:
    attempt: int
    at: datetime | None = None
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> DeliveryAttempt:
        return _known(cls, data, at=parse_time(data.get("at")))


@dataclass(frozen=True)
class Delivery:
    """A webhook event and its attempts to reach the callback URL (``id``: the event id the
    receiver sees in ``X-Imagegen-Delivery``)."""

    id: str
    event: str
    status: str
    url: str | None = None
    job_id: str | None = None
    batch_id: str | None = None
    attempt_count: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    attempts: tuple[DeliveryAttempt, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Delivery:
        times = {
            k: parse_time(data.get(k)) for k in ("created_at", "next_attempt_at", "delivered_at")
        }
        attempts = tuple(DeliveryAttempt.from_api(a) for a in data.get("attempts") or ())
        return _known(cls, data, attempts=attempts, **times)


@dataclass(frozen=True)
class Page:
    """One page of a listing and the cursor of the next (None on the last page)."""

    items: tuple[Any, ...]
    next_cursor: str | None


def page_from_api(data: Any, build: Any) -> Page:
    """A listing's answer: ``{"items": [...], "next_cursor": ...}`` (a bare list is one page)."""
    if isinstance(data, list):
        return Page(tuple(build(item) for item in data), None)
    items: list[Any] = next(
        (data[k] for k in ("items", "data", "jobs", "batches") if k in data), []
    )
    cursor = next((data[k] for k in ("next_cursor", "cursor", "next") if data.get(k)), None)
    return Page(tuple(build(item) for item in items), cursor)
