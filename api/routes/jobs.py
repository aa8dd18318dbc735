"""``/v1/jobs``: enqueue one job (idempotently), list jobs, read one, cancel it, retry it.

Wherever a path names a job, its full id or a unique prefix of 8 or more characters works
(``service.ids``): an ambiguous prefix is a 409 ``ambiguous_id`` listing the candidates. A key
without the ``operate`` scope sees only its own tenant's jobs: another tenant's job is a 404,
and its ids are never among the candidates.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from api.auth import missing_scope, require_token, scoped
from api.body import JsonBodyRoute
from api.errors import responses
from api.schemas import JobCreate, JobOut, JobPage
from worker.core.errors import JobNotFound
from worker.core.tenancy import Principal, Scope
from worker.service import jobs, keys, listing
from worker.service import operator as admin
from worker.service.ids import resolve_batch_id, resolve_job_id

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    dependencies=[Depends(require_token)],
    route_class=JsonBodyRoute,
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Same key and body: the same job (200). Same key, another body: 409.",
    ),
]


@router.post(
    "",
    status_code=202,
    response_model=JobOut,
    summary="Enqueue one generation job",
    responses={
        200: {"model": JobOut, "description": "Replay of an idempotency key"},
        202: {"description": "Accepted: the job is queued"},
        **responses(401, 409, 413, 422),
    },
)
def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
    principal: Principal = Depends(scoped(Scope.PRODUCE)),
) -> dict[str, Any]:
    """Validate and record the job, then nudge the workers (after the commit).

    Answers **202** with the new job, or **200** with the existing one when the
    `Idempotency-Key` was used before with the same body (never a second paid generation).
    """
    outcome = jobs.enqueue_job(
        body.request_fields(),
        idempotency_key=idempotency_key,
        callback_url=body.callback_url,
        ref=body.ref,
        deadline_s=body.deadline_s,
        metadata=body.metadata,
        principal=principal,
    )
    response.status_code = 202 if outcome.created else 200
    response.headers["Location"] = f"/v1/jobs/{outcome.job_id}"
    return jobs.details(outcome.job_id, links=request.app.state.links())


@router.get(
    "",
    response_model=JobPage,
    summary="List jobs, newest first, filtered, page by page",
    responses=responses(401, 404, 409, 422),
)
def list_jobs(
    request: Request,
    principal: Annotated[Principal, Depends(scoped(Scope.READ))],
    status: Annotated[list[str] | None, Query(description="Repeatable, or a, b, c.")] = None,
    batch_id: Annotated[str | None, Query(description="A batch id (or its prefix).")] = None,
    ref: Annotated[str | None, Query(max_length=200)] = None,
    error_code: Annotated[str | None, Query(max_length=64)] = None,
    created_after: Annotated[str | None, Query(description="ISO 8601, inclusive.")] = None,
    created_before: Annotated[str | None, Query(description="ISO 8601, exclusive.")] = None,
    limit: Annotated[int, Query(ge=1, le=listing.MAX_LIMIT)] = listing.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> dict[str, Any]:
    """Jobs newest first. Filters combine (all must hold); `metadata.KEY=VALUE` (repeatable,
    one per key) keeps jobs whose metadata has KEY equal to VALUE (the text, or the number,
    `true`, `false` or `null` it spells). Answers `{"items": [job, ...], "next_cursor"}`;
    pass `next_cursor` as `cursor` for the next page (null: the last page). Without the
    `operate` scope, only the key's own tenant's jobs."""
    tenant = visible_tenant(principal)
    where = listing.job_filter(
        statuses=[part.strip() for value in status or [] for part in value.split(",") if part],
        batch_id=resolve_batch_id(batch_id, tenant=tenant) if batch_id else None,
        tenant=tenant,
        ref=ref,
        error_code=error_code,
        created_after=listing.parse_time(created_after, "created_after"),
        created_before=listing.parse_time(created_before, "created_before"),
        metadata=metadata_filters(request),
    )
    return listing.list_jobs(where, limit=limit, after=cursor, links=request.app.state.links())


def visible_tenant(principal: Principal) -> str | None:
    """The tenant a caller's lists and id prefixes are limited to (None: every tenant)."""
    return None if principal.can(Scope.OPERATE) else principal.tenant


def own_job(principal: Principal, job_id: str) -> uuid.UUID:
    """The job a path names, if the caller may see it (another tenant's is a 404)."""
    found = resolve_job_id(job_id, tenant=visible_tenant(principal))
    keys.check_sees(principal, keys.owner_of_job(found), JobNotFound(f"no job with id {found}"))
    return found


def acting_on_jobs(principal: Principal) -> None:
    """Cancel and retry need `produce` (the key's own tenant's jobs) or `operate` (any)."""
    if not (principal.can(Scope.PRODUCE) or principal.can(Scope.OPERATE)):
        raise missing_scope(Scope.PRODUCE)


def metadata_filters(request: Request) -> dict[str, str]:
    """The `metadata.KEY=VALUE` query parameters, as KEY -> VALUE (the last one per key)."""
    return {
        name.removeprefix("metadata."): value
        for name, value in request.query_params.multi_items()
        if name.startswith("metadata.")
    }


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="A job: status, error, images",
    responses=responses(401, 404, 409, 422),
)
def get_job(
    job_id: str, request: Request, principal: Principal = Depends(scoped(Scope.READ))
) -> dict[str, Any]:
    """Status, error, attempts, timings, and the stored images with presigned download URLs;
    `waiting` says why a queued job is not submitted yet (`budget`)."""
    return jobs.details(own_job(principal, job_id), links=request.app.state.links())


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job",
    responses=responses(401, 404, 409, 422),
)
def cancel_job(
    job_id: str, request: Request, principal: Principal = Depends(require_token)
) -> dict[str, Any]:
    """Cancel an active job (every later step sees it and stops). A job that already ended is
    left as it is; the answer shows its status either way. Needs `produce` (the key's own
    tenant's jobs) or `operate` (any job)."""
    acting_on_jobs(principal)
    found = own_job(principal, job_id)
    jobs.cancel(found, reason=f"cancelled by {principal.label}")
    return jobs.details(found, links=request.app.state.links())


@router.post(
    "/{job_id}/retry",
    response_model=JobOut,
    summary="Retry a failed job",
    responses=responses(401, 404, 409, 422),
)
def retry_job(
    job_id: str, request: Request, principal: Principal = Depends(require_token)
) -> dict[str, Any]:
    """A `failed` job goes back to the queue with fresh counters (`imagegen retry`): a new paid
    prediction. Any other status is a 409 `not_retryable`. Answers the job. Needs `produce`
    (the key's own tenant's jobs) or `operate` (any job)."""
    acting_on_jobs(principal)
    found = own_job(principal, job_id)
    admin.retry_job(found)
    return jobs.details(found, links=request.app.state.links())
