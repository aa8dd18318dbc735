"""``/v1/batches``: submit thousands of jobs at once (JSON or JSONL), list batches, follow one,
read its manifest, cancel it, retry its failed jobs.

Wherever a path names a batch, its full id or a unique prefix of 8 or more characters works
(``service.ids``): an ambiguous prefix is a 409 ``ambiguous_id`` listing the candidates. A key
without the ``operate`` scope sees and acts on its own tenant's batches only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from api.auth import require_token, scoped
from api.body import load_json
from api.errors import ApiError, Problem, responses
from api.routes.jobs import acting_on_jobs, metadata_filters, visible_tenant
from api.schemas import BatchActionOut, BatchCreate, BatchOut, BatchPage
from worker.core.batch_input import BatchItem, parse_jsonl, parse_list
from worker.core.errors import BadInput, BatchNotFound
from worker.core.metadata import check_metadata
from worker.core.request import problems_from
from worker.core.settings import get_settings
from worker.core.tenancy import Principal, Scope
from worker.service import batch_control, batches, keys, listing
from worker.service.ids import resolve_batch_id

router = APIRouter(prefix="/v1/batches", tags=["batches"], dependencies=[Depends(require_token)])

JSONL_TYPES = (
    "application/x-ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/json-lines",
    "text/plain",
)
JSONL_BODY = {"type": "string", "description": "One job object (BatchLine) per line."}
REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/BatchCreate"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/BatchLine"}},
                ]
            }
        },
        "application/x-ndjson": {"schema": JSONL_BODY},
    },
}
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Same key and jobs: the same batch (200). Same key, other jobs: 409.",
    ),
]


@router.post(
    "",
    status_code=202,
    response_model=BatchOut,
    summary="Submit a batch of jobs",
    openapi_extra={"requestBody": REQUEST_BODY},
    responses={
        200: {"model": BatchOut, "description": "Replay of an idempotency key"},
        202: {"description": "Accepted: every job is queued"},
        **responses(401, 409, 413, 415, 422),
    },
)
async def create_batch(
    request: Request,
    response: Response,
    background: BackgroundTasks,
    name: Annotated[str | None, Query(max_length=200)] = None,
    callback_url: Annotated[str | None, Query(max_length=2048)] = None,
    deadline_s: Annotated[float | None, Query(gt=0)] = None,
    metadata: Annotated[
        str | None,
        Query(max_length=8192, description="JSONL only: the batch's metadata, as JSON text."),
    ] = None,
    max_spend: Annotated[float | None, Query(ge=0)] = None,
    idempotency_key: IdempotencyKey = None,
    principal: Principal = Depends(scoped(Scope.PRODUCE)),
) -> dict[str, Any]:
    """Every line is validated first: if any is bad, the answer (422) lists each bad line with
    its number, field and rule, and nothing is enqueued.

    The body is either JSON (a list of jobs, or `{"jobs": [...], "name", "callback_url",
    "deadline_s"}`) or JSONL (`application/x-ndjson`: one job per line, options as query
    parameters). Each job is a generation request plus an optional `ref`, unique in the batch.
    """
    body = await request.body()
    options = {
        "name": name,
        "callback_url": callback_url,
        "deadline_s": deadline_s,
        "metadata": check_metadata(load_json(metadata, field="metadata")) if metadata else None,
        "max_spend": max_spend,
        "principal": principal,
    }
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    receipt = await run_in_threadpool(_submit, body, media, options, idempotency_key)
    if receipt.created:
        background.add_task(batches.nudge, receipt.job_ids)
    response.status_code = 202 if receipt.created else 200
    response.headers["Location"] = f"/v1/batches/{receipt.batch_id}"
    return await run_in_threadpool(batches.batch_status, receipt.batch_id)


def _submit(
    body: bytes, media: str, options: dict[str, Any], idempotency_key: str | None
) -> batches.BatchReceipt:
    items, options = _parse(body, media, options)
    return batches.enqueue_batch(items, idempotency_key=idempotency_key, dispatch=False, **options)


def _parse(
    body: bytes, media: str, options: dict[str, Any]
) -> tuple[list[BatchItem], dict[str, Any]]:
    max_jobs = get_settings().batch_max_jobs
    if media in JSONL_TYPES:
        return parse_jsonl(body.splitlines(), max_jobs=max_jobs), options
    if media != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send application/json or application/x-ndjson",
            [
                Problem(
                    field="content-type", rule="must be application/json or application/x-ndjson"
                )
            ],
        )
    data = load_json(body)
    if isinstance(data, dict):
        return _envelope(data, options, max_jobs)
    return parse_list(data, max_jobs=max_jobs), options


def _envelope(
    data: dict[str, Any], options: dict[str, Any], max_jobs: int
) -> tuple[list[BatchItem], dict[str, Any]]:
    jobs = data.get("jobs")
    try:  # the options only: the jobs are validated line by line below
        envelope = BatchCreate.model_validate({**data, "jobs": []})
    except ValidationError as exc:
        raise BadInput(problems_from(exc)) from None
    if "jobs" not in data:
        raise BadInput([("jobs", "Field required")])
    given = envelope.model_dump(exclude={"jobs"}, exclude_none=True)
    return parse_list(jobs, max_jobs=max_jobs), {**options, **given}


@router.get(
    "",
    response_model=BatchPage,
    summary="List batches, newest first, page by page",
    responses=responses(401, 422),
)
def list_batches(
    request: Request,
    principal: Annotated[Principal, Depends(scoped(Scope.READ))],
    limit: Annotated[int, Query(ge=1, le=listing.MAX_LIMIT)] = listing.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> dict[str, Any]:
    """Each batch as `GET /v1/batches/{id}` shows it; `metadata.KEY=VALUE` filters (repeatable,
    one per key) keep batches whose own metadata has KEY equal to VALUE. Answers `{"items",
    "next_cursor"}`: pass `next_cursor` as `cursor` for the next page (null: the last page).
    Without the `operate` scope, only the key's own tenant's batches."""
    return listing.list_batches(
        metadata=metadata_filters(request),
        limit=limit,
        after=cursor,
        tenant=visible_tenant(principal),
    )


def own_batch(principal: Principal, batch_id: str | uuid.UUID) -> uuid.UUID:
    """The batch a path names, if the caller may see it (another tenant's is a 404)."""
    found = resolve_batch_id(batch_id, tenant=visible_tenant(principal))
    keys.check_sees(
        principal, keys.owner_of_batch(found), BatchNotFound(f"no batch with id {found}")
    )
    return found


@router.get(
    "/{batch_id}",
    response_model=BatchOut,
    summary="A batch: counts, progress, ETA",
    responses=responses(401, 404, 409, 422),
)
def get_batch(batch_id: str, principal: Principal = Depends(scoped(Scope.READ))) -> dict[str, Any]:
    """Counts by status, progress (0 to 1), recent throughput and an estimate of the time left,
    `max_spend` and `spend` (`charged`, `possible`)."""
    return batches.batch_status(own_batch(principal, batch_id))


@router.post(
    "/{batch_id}/cancel",
    response_model=BatchActionOut,
    summary="Cancel every job of a batch that has not ended",
    responses=responses(401, 404, 409, 422),
)
def cancel_batch(batch_id: str, principal: Principal = Depends(require_token)) -> dict[str, Any]:
    """Queued jobs are cancelled at once (one statement); jobs at the provider are cancelled as
    `POST /v1/jobs/{id}/cancel` cancels one (their next step stops). Ended jobs are left as
    they are, so calling it again cancels nothing more (`jobs`: 0). Answers how many jobs this
    call cancelled and the batch. Needs `produce` (the key's own tenant's batches) or
    `operate` (any)."""
    acting_on_jobs(principal)
    done = batch_control.cancel_batch(own_batch(principal, batch_id))
    return {"jobs": done.jobs, "batch": done.batch}


@router.post(
    "/{batch_id}/retry",
    response_model=BatchActionOut,
    summary="Retry a batch's failed jobs",
    responses=responses(401, 404, 409, 422),
)
def retry_batch(
    batch_id: str,
    status: Annotated[str, Query(description="Only `failed` jobs can be retried.")] = "failed",
    code: Annotated[str | None, Query(max_length=64, description="Only this error code.")] = None,
    principal: Principal = Depends(require_token),
) -> dict[str, Any]:
    """Every failed job of the batch (with error `code`, if given) goes back to the queue with
    fresh counters (`imagegen retry --failed --batch ID`): each is a new paid prediction.
    Answers how many were retried and the batch. Needs `produce` (the key's own tenant's
    batches) or `operate` (any)."""
    acting_on_jobs(principal)
    done = batch_control.retry_batch(own_batch(principal, batch_id), status=status, code=code)
    return {"jobs": done.jobs, "batch": done.batch}


@router.get(
    "/{batch_id}/manifest",
    summary="The batch manifest (JSONL)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {"schema": JSONL_BODY}},
            "description": "One line per job, in submission order: ref, "
            "job_id, status, error, images (bucket, key, "
            "sha256, bytes, width, height)",
        },
        **responses(401, 404, 422),
    },
)
def get_manifest(
    batch_id: str | uuid.UUID, principal: Principal = Depends(scoped(Scope.READ))
) -> StreamingResponse:
    """Streamed page by page, so a 100,000-job manifest never sits in memory."""
    # raises (404) before the first byte is sent
    lines = batches.manifest(own_batch(principal, batch_id))
    return StreamingResponse(_jsonl(lines), media_type="application/x-ndjson")


def _jsonl(lines: Iterator[dict[str, Any]], chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """Lines grouped in chunks: each chunk is one hop to the thread pool, not each line."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        chunk.append(json.dumps(line).encode() + b"\n")
        size += len(chunk[-1])
        if size >= chunk_bytes:
            yield b"".join(chunk)
            chunk, size = [], 0
    if chunk:
        yield b"".join(chunk)
