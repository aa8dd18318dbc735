"""``/v1/spend``: what submissions cost, per tenant, per UTC day and in total.

``charged`` counts (and prices) the submissions the provider accepted, ``possible`` the
ambiguous ones; both at ``IMAGEGEN_PRICES``, an estimate the operator sets. A key sees its own
tenant's spend; one with ``operate`` sees every tenant's.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.auth import require_token, scoped
from api.errors import ApiError, responses
from models.base import utcnow
from worker.core.tenancy import Principal, Scope
from worker.core.timespec import parse_since
from worker.service import spend

router = APIRouter(prefix="/v1/spend", tags=["spend"], dependencies=[Depends(require_token)])


@router.get(
    "",
    summary="Spend: charged and possible, per tenant and day",
    responses=responses(401, 403, 422),
)
def get_spend(
    tenant: Annotated[str | None, Query(max_length=63)] = None,
    batch_id: uuid.UUID | None = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            description="A duration back (24h, 7d) or an ISO 8601 time (without a zone: UTC), "
            "as `imagegen spend --since` takes it",
        ),
    ] = None,
    principal: Principal = Depends(scoped(Scope.READ)),
) -> dict[str, Any]:
    """`charged` and `possible` (each `amount` and `count`) in total, under `tenants` per
    tenant and under `days` per UTC day, for the filters given."""
    if tenant is None and not principal.can(Scope.OPERATE):
        tenant = principal.tenant
    if tenant is not None and not principal.sees(tenant):
        raise ApiError(
            403, "forbidden", "this key sees only its own tenant's spend ('operate' sees all)"
        )
    start = parse_since(since, now=utcnow()) if since else None
    return spend.report(tenant=tenant, batch_id=batch_id, since=start)
