"""``/v1/jobs``: enqueue one job (idempotently), read it, cancel it."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response

from api.auth import missing_scope, require_token, scoped
from api.body import JsonBodyRoute
from api.errors import responses
from api.schemas import JobCreate, JobOut
from worker.core.errors import JobNotFound
from worker.core.tenancy import Principal, Scope
from worker.service import jobs, keys

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
        principal=principal,
    )
    response.status_code = 202 if outcome.created else 200
    response.headers["Location"] = f"/v1/jobs/{outcome.job_id}"
    return jobs.details(outcome.job_id, links=request.app.state.links())


@router.get(
    "/{job_id}",
    response_model=JobOut,
    summary="A job: status, error, images",
    responses=responses(401, 404, 422),
)
def get_job(
    job_id: uuid.UUID, request: Request, principal: Principal = Depends(scoped(Scope.READ))
) -> dict[str, Any]:
    """Status, error, attempts, timings, and the stored images with presigned download URLs;
    `waiting` says why a queued job is not submitted yet (`budget`)."""
    view = jobs.details(job_id, links=request.app.state.links())
    keys.check_sees(principal, view["tenant"], JobNotFound(f"no job with id {job_id}"))
    return view


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    summary="Cancel a job",
    responses=responses(401, 404, 422),
)
def cancel_job(
    job_id: uuid.UUID, request: Request, principal: Principal = Depends(require_token)
) -> dict[str, Any]:
    """Cancel an active job (every later step sees it and stops). A job that already ended is
    left as it is; the answer shows its status either way. Needs `produce` (the key's own
    tenant's jobs) or `operate` (any job)."""
    if not (principal.can(Scope.PRODUCE) or principal.can(Scope.OPERATE)):
        raise missing_scope(Scope.PRODUCE)
    tenant = keys.owner_of_job(job_id)
    keys.check_sees(principal, tenant, JobNotFound(f"no job with id {job_id}"))
    jobs.cancel(job_id, reason=f"cancelled by {principal.label}")
    return jobs.details(job_id, links=request.app.state.links())
