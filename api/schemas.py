"""Request and response bodies of the HTTP API (they are its OpenAPI description too)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from worker.core.batch_input import MAX_REF_CHARS
from worker.core.metadata import MAX_METADATA_BYTES, metadata_problem
from worker.core.request import GenerationRequest
from worker.core.untrusted import StoredText
from worker.service.batches import MAX_NAME_CHARS
from worker.service.jobs import MAX_DEADLINE_S

_REQUEST_FIELDS = set(GenerationRequest.model_fields)
METADATA_DESCRIPTION = (
    f"Your own JSON object (at most {MAX_METADATA_BYTES} bytes; keys of letters, digits and "
    "_ . : -), echoed back and filterable with `metadata.KEY=VALUE`."
)


def _checked_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and (problem := metadata_problem(value)):
        raise ValueError(problem)
    return value


class _WithMetadata(BaseModel):
    metadata: dict[str, Any] | None = Field(default=None, description=METADATA_DESCRIPTION)

    _check_metadata = field_validator("metadata")(_checked_metadata)


class JobCreate(GenerationRequest, _WithMetadata):
    """A generation request (the provider contract's fields) and what to do with the result."""

    callback_url: StoredText | None = Field(
        default=None,
        max_length=2048,
        description="Receives a signed webhook when the job ends (https, public host).",
    )
    ref: StoredText | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_REF_CHARS,
        description="Your own reference, echoed back.",
    )
    deadline_s: float | None = Field(
        default=None,
        strict=True,
        gt=0,
        le=MAX_DEADLINE_S,
        description="Fail the job if not done in this many s.",
    )

    def request_fields(self) -> dict[str, Any]:
        return self.model_dump(include=_REQUEST_FIELDS, exclude_none=True, mode="json")


class BatchLine(GenerationRequest, _WithMetadata):
    """One job of a batch: a generation request, your reference for it (unique) and its
    metadata (merged over the batch's)."""

    ref: StoredText | None = Field(default=None, min_length=1, max_length=MAX_REF_CHARS)


class BatchCreate(_WithMetadata):
    """A batch as one JSON object: the jobs and options for all of them."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[BatchLine] = Field(description="The jobs, in order (at least one).")
    name: StoredText | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    callback_url: StoredText | None = Field(
        default=None,
        max_length=2048,
        description="Receives one signed batch.completed event when every job has ended.",
    )
    deadline_s: float | None = Field(default=None, strict=True, gt=0, le=MAX_DEADLINE_S)
    max_spend: float | None = Field(
        default=None,
        ge=0,
        description="Most the batch's submissions may cost (IMAGEGEN_PRICES); past it, its "
        "jobs wait (`waiting: budget`).",
    )


class ErrorInfo(BaseModel):
    code: str | None
    message: str | None


class Timings(BaseModel):
    created_at: datetime | None
    submitted_at: datetime | None
    generated_at: datetime | None
    finished_at: datetime | None
    deadline_at: datetime | None
    queued_s: float | None = Field(description="From enqueue to accepted by the provider.")
    generation_s: float | None
    transfer_s: float | None
    total_s: float | None


class ImageOut(BaseModel):
    index: int
    url: str | None = Field(description="Presigned download link (expires).")
    expires_at: datetime | None = Field(
        default=None,
        description="When `url` stops working (IMAGEGEN_PRESIGN_EXPIRY_S after it was made; "
        "read the job again for a fresh link). None: the link does not expire.",
    )
    bucket: str
    key: str
    content_type: str
    bytes: int
    sha256: str
    width: int
    height: int
    nsfw: bool | None


class JobOut(BaseModel):
    id: str
    status: str = Field(
        description="queued, submitting, running, transferring, succeeded, failed or cancelled"
    )
    ref: str | None
    batch_id: str | None
    priority: str
    request: dict[str, Any]
    callback_url: str | None
    metadata: dict[str, Any] | None
    error: ErrorInfo | None
    attempts: int
    polls: int
    transfer_attempts: int
    ambiguous_submits: int
    timings: Timings
    images: list[ImageOut]
    tenant: str = Field(description="The tenant whose key enqueued it.")
    key_id: str | None = None
    waiting: str | None = Field(
        default=None,
        description="Why a queued job is not submitted yet: `budget` (its tenant's or batch's "
        "budget cannot take its price) or `tenant_in_flight`.",
    )


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


class BatchOut(BaseModel):
    id: str
    name: str | None
    total: int
    counts: dict[str, int] = Field(description="Jobs by status.")
    done: int = Field(description="Jobs in a terminal status.")
    progress: float = Field(description="done / total, 0 to 1.")
    completed: bool
    rate_per_s: float = Field(description="Jobs finished per second recently.")
    eta_s: float | None = Field(description="Estimated seconds until every job has ended.")
    elapsed_s: float
    callback_url: str | None
    metadata: dict[str, Any] | None
    tenant: str = "default"
    max_spend: float | None = None
    spend: dict[str, Any] | None = Field(
        default=None, description="`charged` and `possible`: amount and count."
    )
    created_at: datetime
    completed_at: datetime | None


class BatchPage(BaseModel):
    items: list[BatchOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: none.")


class BatchActionOut(BaseModel):
    jobs: int = Field(description="Jobs this call cancelled or sent back to the queue.")
    batch: BatchOut
