"""``/v1/fleet``: the fleet's submission state, and pausing or resuming submissions.

The same functions as ``imagegen status``, ``imagegen pause`` and ``imagegen resume``
(``service.operator``, ``store.fleet``). Pausing stops new submissions fleet-wide; polls and
transfers of predictions already at the provider go on; queued jobs stay queued and none fails
because of the pause.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.auth import require_token, scoped
from api.body import JsonBodyRoute
from api.errors import responses
from worker.core.tenancy import Principal, Scope
from worker.core.untrusted import StoredText
from worker.service import operator
from worker.store import fleet

router = APIRouter(
    prefix="/v1/fleet",
    tags=["fleet"],
    dependencies=[Depends(require_token)],
    route_class=JsonBodyRoute,
)


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: StoredText = Field(
        default="paused through the API",
        min_length=1,
        max_length=500,
        description="Why (shown by `imagegen status` and the dashboard)",
    )


@router.get(
    "",
    summary="Submissions paused or not, breaker, cool-down, rate, in flight",
    responses=responses(401),
    dependencies=[Depends(scoped(Scope.READ))],
)
def get_fleet() -> dict[str, Any]:
    """`paused` (and `reason`, `pause_code`, `paused_at`, `paused_by`), `breaker` (`closed`,
    `open` or `half_open`), `cooldown_until`, `submit_rate`, `in_flight`, `max_in_flight`."""
    return fleet.read_fleet_state().as_dict()


@router.post("/pause", summary="Pause submissions fleet-wide", responses=responses(401, 422))
def pause(
    body: PauseRequest | None = None, principal: Principal = Depends(scoped(Scope.OPERATE))
) -> dict[str, Any]:
    """Idempotent: pausing again keeps the first reason. The body (and its `reason`) may be
    left out. Answers the fleet state; `paused_by` is the tenant and key that paused. Needs
    the `operate` scope."""
    return operator.pause((body or PauseRequest()).reason, by=principal.label).as_dict()


@router.post("/resume", summary="Resume submissions", responses=responses(401))
def resume(principal: Principal = Depends(scoped(Scope.OPERATE))) -> dict[str, Any]:
    """Idempotent. Answers the fleet state. Needs the `operate` scope."""
    return operator.resume(by=principal.label).as_dict()
