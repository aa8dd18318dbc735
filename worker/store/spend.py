"""The SQL of spend and budgets: reservations, charges, the ledger and its sums.

A submit claim reserves the job's price on every counter that limits it (its tenant's UTC day
and month, its batch) with one guarded ``UPDATE ... WHERE charged + possible + reserved +
price <= budget`` per counter, in the claim's transaction: the reservation exists exactly when
the job is ``submitting``, and two claims can never both take the last unit (the second one's
guard sees the first one's reservation, or waits on its row lock). Counters without a limit are
reserved on as well, unguarded, so a budget set in the middle of a day sees that day's spend.

The move that ends the submit settles it (``settle``, called by ``store.transitions.move``):
accepted (a prediction id came back) -> charged; ambiguous -> possible; anything else ->
released. Possible charges count against budgets: they may be real money.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from sqlalchemy import Date, Row, and_, cast, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from models import Batch, Charge, Job, SpendCounter, Tenant
from worker.core import tenancy
from worker.store import outbox
from worker.store.jobs import add_event
from worker.telemetry import metrics

log = logging.getLogger("imagegen.spend")

Outcome = Literal["charged", "possible", "released"]


@dataclass(frozen=True)
class Limit:
    """One counter a job's charge lands on, and its budget (None: no limit)."""

    scope: str
    period: str
    limit: int | None

    @property
    def label(self) -> str:
        return self.period.split(":")[0] if self.scope.startswith("tenant:") else "batch"


def tenant_scope(tenant: str) -> str:
    return f"tenant:{tenant}"


def batch_scope(batch_id: uuid.UUID) -> str:
    return f"batch:{batch_id}"


def limits_of(
    session: Session, *, tenant: str, batch_id: uuid.UUID | None, now: datetime
) -> list[Limit]:
    """The counters a charge of this tenant (and batch) lands on, with their budgets."""
    row = session.get(Tenant, tenant)
    scope = tenant_scope(tenant)
    found = [
        Limit(scope, tenancy.day_period(now), row.daily_budget if row else None),
        Limit(scope, tenancy.month_period(now), row.monthly_budget if row else None),
    ]
    if batch_id is not None:
        max_spend = session.scalar(select(Batch.max_spend).where(Batch.id == batch_id))
        if max_spend is not None:
            found.append(Limit(batch_scope(batch_id), tenancy.WHOLE, max_spend))
    return found


def _insert(session: Session) -> Callable[..., Any]:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _ensure(session: Session, limits: Iterable[Limit]) -> None:
    rows = [
        {
            "scope": item.scope,
            "period": item.period,
            "charged": 0,
            "charged_count": 0,
            "possible": 0,
            "possible_count": 0,
            "reserved": 0,
            "warned": False,
        }
        for item in limits
    ]
    if rows:
        session.execute(_insert(session)(SpendCounter).values(rows).on_conflict_do_nothing())


_USED = SpendCounter.charged + SpendCounter.possible + SpendCounter.reserved


def _counter(item: Limit) -> Any:
    return and_(SpendCounter.scope == item.scope, SpendCounter.period == item.period)


def reserve(
    session: Session,
    *,
    job_id: uuid.UUID,
    tenant: str,
    batch_id: uuid.UUID | None,
    price: int,
    now: datetime,
) -> dict[str, Any] | None:
    """Reserve ``price`` on every counter of the job: the reservation to store on the job, or
    None when a budget would be crossed (nothing is left reserved)."""
    limits = limits_of(session, tenant=tenant, batch_id=batch_id, now=now)
    done: list[Limit] = []
    for item in limits:
        statement = (
            update(SpendCounter)
            .where(_counter(item))
            .values(reserved=SpendCounter.reserved + price)
            .returning(_USED, SpendCounter.warned)
        )
        if item.limit is not None:
            statement = statement.where(_USED + price <= item.limit)
        row = session.execute(statement).first()
        if row is None:  # the period's first charge (its row is created), or over budget
            _ensure(session, [item])
            row = session.execute(statement).first()
        if row is None:
            _unreserve(session, done, price)
            return None
        done.append(item)
        _warn(session, item, tenant, job_id, used=int(row[0]), price=price, warned=row[1])
    return {"amount": price, "counters": [[item.scope, item.period] for item in done]}


def _warn(
    session: Session,
    item: Limit,
    tenant: str,
    job_id: uuid.UUID,
    *,
    used: int,
    price: int,
    warned: bool,
) -> None:
    """Past 80 % of a budget, once per counter: a metric, a log line, a job event and a
    ``budget.warning`` webhook (``store.outbox``)."""
    if warned or not tenancy.crossed_warning(used - price, used, item.limit):
        return
    session.execute(update(SpendCounter).where(_counter(item)).values(warned=True))
    metrics.budget_warning(session, tenant, item.label)
    detail = {
        "scope": item.scope,
        "period": item.period,
        "used": tenancy.from_micros(used),
        "budget": tenancy.from_micros(item.limit or 0),
    }
    add_event(session, job_id=job_id, event="budget_warning", detail=detail)
    outbox.budget_warning(session, job_id=job_id, scope=item.scope, period=item.period)
    log.warning("budget_warning", extra={"tenant": tenant, **detail})


def _unreserve(session: Session, limits: Iterable[Limit], price: int) -> None:
    for item in limits:
        session.execute(
            update(SpendCounter)
            .where(_counter(item))
            .values(reserved=SpendCounter.reserved - price)
        )


def release(session: Session, reservation: dict[str, Any]) -> None:
    """Give a reservation back that was never stored on its job (the claim lost the race)."""
    _apply(session, reservation, "released")


class Reserved(NamedTuple):
    """What a settlement needs of the job's row (its move's update returns it)."""

    reservation: dict[str, Any] | None
    tenant: str
    batch_id: uuid.UUID | None


def settle(
    session: Session,
    *,
    job_id: uuid.UUID,
    outcome: Outcome,
    reserved: Reserved | None = None,
    cleared: bool = False,
) -> None:
    """Turn the job's reservation into a charge, a possible charge, or nothing; a job without
    one (claimed before budgets existed, settled already) is left as it is. ``reserved``: the
    row as the caller's statement just returned it, in this transaction (else it is read);
    ``cleared``: that statement also cleared the job's reservation."""
    row: Reserved | Row[Any] | None = reserved
    if row is None:
        query = select(Job.reservation, Job.tenant, Job.batch_id).where(Job.id == job_id)
        row = session.execute(query).first()
    if row is None or not row.reservation:
        return
    reservation = row.reservation
    _apply(session, reservation, outcome)
    if not cleared:
        session.execute(update(Job).where(Job.id == job_id).values(reservation=None))
    if outcome == "released":
        return
    amount = int(reservation["amount"])
    session.execute(
        insert(Charge).values(
            job_id=job_id,
            batch_id=row.batch_id,
            tenant=row.tenant,
            kind=outcome,
            amount=amount,
            detail=reservation,
        )
    )
    metrics.spent(session, row.tenant, outcome, amount)


def _apply(session: Session, reservation: dict[str, Any], outcome: Outcome) -> None:
    amount = int(reservation["amount"])
    values: dict[str, Any] = {"reserved": SpendCounter.reserved - amount}
    if outcome == "charged":
        values |= {
            "charged": SpendCounter.charged + amount,
            "charged_count": SpendCounter.charged_count + 1,
        }
    elif outcome == "possible":
        values |= {
            "possible": SpendCounter.possible + amount,
            "possible_count": SpendCounter.possible_count + 1,
        }
    for scope, period in reservation["counters"]:
        session.execute(
            update(SpendCounter)
            .where(SpendCounter.scope == scope, SpendCounter.period == period)
            .values(**values)
        )


# --- what waits ---------------------------------------------------------------------------------


def fits(
    session: Session, *, tenant: str, batch_id: uuid.UUID | None, price: int, now: datetime
) -> bool:
    """Whether a charge of ``price`` would fit every budget now (a read; the claim decides)."""
    limits = [
        item
        for item in limits_of(session, tenant=tenant, batch_id=batch_id, now=now)
        if item.limit is not None
    ]
    used = _used(session, limits)
    return all(
        tenancy.fits(used.get((item.scope, item.period), 0), price, item.limit) for item in limits
    )


def _used(session: Session, limits: list[Limit]) -> dict[tuple[str, str], int]:
    if not limits:
        return {}
    keys = {(item.scope, item.period) for item in limits}
    rows = session.execute(
        select(SpendCounter.scope, SpendCounter.period, _USED).where(
            SpendCounter.scope.in_({scope for scope, _ in keys})
        )
    )
    return {(scope, period): int(used) for scope, period, used in rows if (scope, period) in keys}


def out_of_budget(
    session: Session, *, price: int, now: datetime, batch_ids: Iterable[uuid.UUID]
) -> tuple[set[str], set[uuid.UUID]]:
    """Tenants and batches (of ``batch_ids``) that cannot take even a ``price`` charge now:
    the dispatcher leaves their jobs in the table."""
    tenants = session.execute(
        select(Tenant.name, Tenant.daily_budget, Tenant.monthly_budget).where(
            (Tenant.daily_budget.is_not(None)) | (Tenant.monthly_budget.is_not(None))
        )
    ).all()
    limits: list[Limit] = []
    for name, daily, monthly in tenants:
        limits += [
            Limit(tenant_scope(name), tenancy.day_period(now), daily),
            Limit(tenant_scope(name), tenancy.month_period(now), monthly),
        ]
    batch_ids = list(batch_ids)
    if batch_ids:
        for batch_id, max_spend in session.execute(
            select(Batch.id, Batch.max_spend).where(
                Batch.id.in_(batch_ids), Batch.max_spend.is_not(None)
            )
        ):
            limits.append(Limit(batch_scope(batch_id), tenancy.WHOLE, max_spend))
    used = _used(session, limits)
    blocked_tenants: set[str] = set()
    blocked_batches: set[uuid.UUID] = set()
    for item in limits:
        if tenancy.fits(used.get((item.scope, item.period), 0), price, item.limit):
            continue
        kind, _, name = item.scope.partition(":")
        if kind == "tenant":
            blocked_tenants.add(name)
        else:
            blocked_batches.add(uuid.UUID(name))
    return blocked_tenants, blocked_batches


# --- reports ------------------------------------------------------------------------------------


def ledger_sums(
    session: Session,
    *,
    tenant: str | None = None,
    batch_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    since: datetime | None = None,
) -> list[tuple[str, str, Any, int, int]]:
    """(tenant, kind, UTC day, amount, count) rows of the ledger."""
    day = (
        cast(Charge.at, Date)
        if session.get_bind().dialect.name == "postgresql"
        else func.date(Charge.at)
    )
    query = select(Charge.tenant, Charge.kind, day, func.sum(Charge.amount), func.count()).group_by(
        Charge.tenant, Charge.kind, day
    )
    if tenant is not None:
        query = query.where(Charge.tenant == tenant)
    if batch_id is not None:
        query = query.where(Charge.batch_id == batch_id)
    if job_id is not None:
        query = query.where(Charge.job_id == job_id)
    if since is not None:
        query = query.where(Charge.at >= since)
    return [(t, k, d, int(a or 0), int(c)) for t, k, d, a, c in session.execute(query)]


def counters(session: Session, *, scope: str, periods: Iterable[str]) -> dict[str, SpendCounter]:
    rows = session.scalars(
        select(SpendCounter).where(
            SpendCounter.scope == scope, SpendCounter.period.in_(list(periods))
        )
    )
    return {row.period: row for row in rows}
