"""``/v1/webhooks/deliveries``: the webhook events recorded, their attempts, redelivery.

A delivery's ``id`` is the event id receivers see (``X-Imagegen-Delivery``); a redelivery is a
new attempt of the same delivery, so it keeps that id (``service.webhooks``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import scoped
from api.errors import responses
from worker.core.tenancy import Scope
from worker.service import listing, webhooks
from worker.service.ids import resolve_batch_id, resolve_job_id

#: Deliveries carry every tenant's callback URLs and events: an operator's view (`operate`).
router = APIRouter(
    prefix="/v1/webhooks", tags=["webhooks"], dependencies=[Depends(scoped(Scope.OPERATE))]
)


class AttemptOut(BaseModel):
    attempt: int
    at: str | None
    status_code: int | None
    error: str | None
    duration_ms: int | None


class DeliveryOut(BaseModel):
    id: str = Field(description="The delivery, and the event id receivers see.")
    event: str
    status: str = Field(description="pending, delivered or failed")
    url: str
    job_id: str | None
    batch_id: str | None
    attempt_count: int
    last_status_code: int | None
    last_error: str | None
    created_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    attempts: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


@router.get(
    "/deliveries",
    response_model=DeliveryPage,
    summary="Webhook deliveries with their attempts, newest first",
    responses=responses(401, 404, 409, 422),
)
def list_deliveries(
    status: Annotated[str | None, Query(description="pending, delivered or failed")] = None,
    job_id: Annotated[str | None, Query(description="Only this job's (id or prefix).")] = None,
    batch_id: Annotated[str | None, Query(description="Only this batch's (id or prefix).")] = None,
    limit: Annotated[int, Query(ge=1, le=listing.MAX_LIMIT)] = listing.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> dict[str, Any]:
    """`{"items": [delivery, ...], "next_cursor"}`; each delivery lists every attempt (when,
    status code or error, duration)."""
    return webhooks.list_deliveries(
        status=status,
        job_id=resolve_job_id(job_id) if job_id else None,
        batch_id=resolve_batch_id(batch_id) if batch_id else None,
        limit=limit,
        after=cursor,
    )


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryOut,
    summary="Send a delivery again (same event id)",
    responses=responses(401, 404, 409, 422),
)
def redeliver(delivery_id: uuid.UUID) -> dict[str, Any]:
    """A new attempt of the delivery, whatever its status (a failed one, or a delivered one the
    receiver lost), with the same event id; 409 `delivery_in_progress` while an attempt is
    under way. Answers the delivery (its status `pending` until the attempt is made)."""
    return webhooks.redeliver(delivery_id)
