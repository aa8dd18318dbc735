"""Spend and budgets: what each tenant, batch and job cost, what is allowed, what waits.

Amounts are shown in the account's currency, at the prices of ``IMAGEGEN_PRICES`` (an
estimate the operator sets; the provider's invoice is the truth). ``charged`` counts the
submissions the provider accepted (a prediction id came back); ``possible`` the ambiguous ones
(a timeout or 5xx after the request was sent), which may or may not have been paid for.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from models import Job
from models.base import utcnow
from worker.core import ports, tenancy
from worker.core.errors import BadInput
from worker.core.settings import get_settings
from worker.core.states import JobStatus
from worker.db.aftercommit import call_after_commit
from worker.db.engine import session_scope
from worker.store import spend as spend_store
from worker.store import tenants


def _money(micros: int, count: int) -> dict[str, Any]:
    return {"amount": tenancy.from_micros(micros), "count": count}


def waiting(session: Session, job: Job) -> dict[str, Any]:
    """Who a job belongs to and, while it is queued, ``waiting: "budget"`` when its tenant's
    or batch's budget cannot take its price now (it goes on when the budget resets or is
    raised), ``"tenant_in_flight"`` when its tenant has its cap of predictions out."""
    reason = None
    if job.status == JobStatus.QUEUED:
        price = tenancy.price_of(get_settings().price_table, job.resolution)
        now = utcnow()
        tenant = tenants.get_tenant(session, job.tenant)
        if not spend_store.fits(
            session, tenant=job.tenant, batch_id=job.batch_id, price=price, now=now
        ):
            reason = "budget"
        elif (
            tenant is not None
            and tenant.max_in_flight is not None
            and tenants.in_flight(session, job.tenant) >= tenant.max_in_flight
        ):
            reason = "tenant_in_flight"
    return {"tenant": job.tenant, "key_id": job.key_id, "waiting": reason}


def report(
    *,
    tenant: str | None = None,
    batch_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    since: datetime | None = None,
) -> dict[str, Any]:
    """Charged and possible spend per tenant, per UTC day, and in total (from the ledger)."""
    with session_scope() as session:
        rows = spend_store.ledger_sums(
            session, tenant=tenant, batch_id=batch_id, job_id=job_id, since=since
        )
    return summarize(rows) | {
        "filters": {
            "tenant": tenant,
            "batch_id": str(batch_id) if batch_id else None,
            "job_id": str(job_id) if job_id else None,
            "since": since.isoformat() if since else None,
        },
        "currency_note": "estimated at IMAGEGEN_PRICES",
    }


def summarize(rows: Iterable[tuple[str, str, Any, int, int]]) -> dict[str, Any]:
    """Ledger sums (tenant, kind, day, amount, count) -> totals per tenant, per day, overall."""
    totals = {"charged": [0, 0], "possible": [0, 0]}
    by_tenant: dict[str, dict[str, list[int]]] = {}
    by_day: dict[str, dict[str, list[int]]] = {}
    for tenant, kind, day, amount, count in rows:
        for bucket in (
            totals,
            by_tenant.setdefault(tenant, {"charged": [0, 0], "possible": [0, 0]}),
            by_day.setdefault(str(day), {"charged": [0, 0], "possible": [0, 0]}),
        ):
            bucket[kind][0] += amount
            bucket[kind][1] += count

    def shown(sums: dict[str, list[int]]) -> dict[str, Any]:
        return {kind: _money(amount, count) for kind, (amount, count) in sums.items()}

    return {
        **shown(totals),
        "tenants": {name: shown(sums) for name, sums in sorted(by_tenant.items())},
        "days": {day: shown(sums) for day, sums in sorted(by_day.items())},
    }


# --- budgets ------------------------------------------------------------------------------------


def set_budget(
    *,
    tenant: str,
    daily: float | None = None,
    monthly: float | None = None,
    weight: float | None = None,
    max_in_flight: int | None = None,
    submit_rate: float | None = None,
    clear: Iterable[str] = (),
) -> dict[str, Any]:
    """Change a tenant's budgets, weight, in-flight cap or submit rate (created if new);
    ``clear`` names limits to remove (``daily``, ``monthly``, ``max_in_flight``,
    ``submit_rate``). Jobs waiting on a budget go on at the next dispatch cycle when it is
    raised."""
    _check_budget(tenant, daily, monthly, weight, max_in_flight, clear)
    if submit_rate is not None and not submit_rate > 0:
        raise BadInput([("submit_rate", "must be greater than 0")])
    values: dict[str, Any] = {}
    if daily is not None:
        values["daily_budget"] = tenancy.to_micros(daily)
    if monthly is not None:
        values["monthly_budget"] = tenancy.to_micros(monthly)
    if weight is not None:
        values["weight"] = weight
    if max_in_flight is not None:
        values["max_in_flight"] = max_in_flight
    if submit_rate is not None:
        values |= {"submit_rate": submit_rate, "rate_tokens": None, "rate_tokens_at": None}
    for name in clear:
        values[name if name in ("max_in_flight", "submit_rate") else f"{name}_budget"] = None
    with session_scope() as session:
        tenants.ensure_tenant(session, tenant)
        if values:
            tenants.update_tenant(session, tenant, values)
        call_after_commit(session, _wake)
    return next(item for item in list_budgets() if item["tenant"] == tenant)


def _check_budget(
    tenant: str,
    daily: float | None,
    monthly: float | None,
    weight: float | None,
    max_in_flight: int | None,
    clear: Iterable[str],
) -> None:
    problems: list[tuple[str, str]] = []
    try:
        tenancy.check_tenant(tenant)
    except ValueError as exc:
        problems.append(("tenant", str(exc)))
    for name, value in (("daily", daily), ("monthly", monthly)):
        if value is not None and value < 0:
            problems.append((name, "must be an amount >= 0"))
    if weight is not None and not weight > 0:
        problems.append(("weight", "must be greater than 0"))
    if max_in_flight is not None and max_in_flight < 0:
        problems.append(("max_in_flight", "must be >= 0"))
    unknown = set(clear) - {"daily", "monthly", "max_in_flight", "submit_rate"}
    if unknown:
        problems.append(("clear", f"unknown limit(s) {sorted(unknown)}"))
    if problems:
        raise BadInput(problems)


def _wake() -> None:
    ports.current().wake_dispatcher(force=True)


def list_budgets() -> list[dict[str, Any]]:
    """Every tenant: budgets, weight, cap, and what today and this month used so far."""
    now = utcnow()
    day, month = tenancy.day_period(now), tenancy.month_period(now)
    with session_scope() as session:
        found = []
        for tenant in tenants.list_tenants(session):
            used = spend_store.counters(
                session, scope=spend_store.tenant_scope(tenant.name), periods=[day, month]
            )
            found.append(
                {
                    "tenant": tenant.name,
                    "daily": _amount(tenant.daily_budget),
                    "monthly": _amount(tenant.monthly_budget),
                    "weight": tenant.weight,
                    "max_in_flight": tenant.max_in_flight,
                    "submit_rate": tenant.submit_rate,
                    "today": _usage(used.get(day)),
                    "this_month": _usage(used.get(month)),
                }
            )
        return found


def _amount(micros: int | None) -> float | None:
    return None if micros is None else tenancy.from_micros(micros)


def _usage(counter: Any) -> dict[str, Any]:
    if counter is None:
        return {"charged": 0.0, "possible": 0.0, "reserved": 0.0}
    return {
        "charged": tenancy.from_micros(counter.charged),
        "possible": tenancy.from_micros(counter.possible),
        "reserved": tenancy.from_micros(counter.reserved),
    }


def batch_spend(session: Session, batch_id: uuid.UUID) -> dict[str, Any]:
    """A batch's spend (the batch page, ``GET /v1/batches/{id}``)."""
    totals = summarize(spend_store.ledger_sums(session, batch_id=batch_id))
    return {"charged": totals["charged"], "possible": totals["possible"]}


def parse_amount(value: str | float | None, field: str) -> int | None:
    """An amount given by a caller (``max_spend``) -> micro-units; BadInput naming ``field``."""
    if value is None or value == "":
        return None
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise BadInput([(field, "must be an amount (a number >= 0)")]) from None
    if not amount >= 0 or amount == float("inf"):
        raise BadInput([(field, "must be an amount (a number >= 0)")])
    return tenancy.to_micros(amount)
