"""Tenants' rules: key scopes, key lifetimes, the price table, budget periods, fair shares.

Pure vocabulary shared by the API, the CLI, the claim and the dispatcher. Money is counted in
micro-units of the account's currency (``1.0`` = ``1_000_000``) as integers everywhere it is
stored or compared: sums of floats drift, and a budget guard must be exact to the unit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from worker.core.timespec import parse_duration

#: The tenant of the tokens in ``IMAGEGEN_API_TOKENS`` and of jobs enqueued from Python.
DEFAULT_TENANT = "default"
#: What the provider is assumed to charge per image, by resolution (see ``IMAGEGEN_PRICES``).
DEFAULT_PRICES = {"1080p": 0.02, "2K": 0.03, "4K": 0.05}
MICROS = 1_000_000
#: Share of a budget past which a warning is raised (metric, log line, job event).
WARN_FRACTION = 0.8
TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


class Scope(StrEnum):
    """What a key may do."""

    #: See its own tenant's jobs, batches and spend.
    READ = "read"
    #: Enqueue jobs and batches; cancel its own tenant's jobs.
    PRODUCE = "produce"
    #: See and act on every tenant's jobs: pause, resume, cancel and retry, in bulk too.
    OPERATE = "operate"
    #: Keys, budgets, and everything the other scopes allow.
    ADMIN = "admin"


#: Scopes a scope brings with it: an admin can do anything, an operator sees what it acts on.
_IMPLIES = {
    Scope.ADMIN: frozenset(Scope),
    Scope.OPERATE: frozenset({Scope.OPERATE, Scope.READ}),
}


def parse_scopes(value: str | Iterable[str]) -> frozenset[Scope]:
    """``read,produce`` -> the scopes; ValueError naming an unknown one, or when none."""
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [name.strip().lower() for name in names if name.strip()]
    unknown = [name for name in names if name not in set(Scope)]
    if unknown or not names:
        raise ValueError(
            f"must be one or more of {', '.join(Scope)} (comma-separated); got {unknown or names}"
        )
    return frozenset(Scope(name) for name in names)


def grants(scopes: Iterable[Scope | str], needed: Scope) -> bool:
    """Whether a key with ``scopes`` may do what ``needed`` allows."""
    return any(needed in _IMPLIES.get(Scope(scope), {Scope(scope)}) for scope in scopes)


def check_tenant(name: str) -> str:
    """A tenant name: lower-case letters, digits, ``_.-``, at most 63 characters."""
    if not TENANT_NAME.match(name):
        raise ValueError(
            "must be 1-63 lower-case letters, digits, '_', '.' or '-', starting with a letter "
            f"or digit; got {name!r}"
        )
    return name


def parse_expiry(value: str, now: datetime) -> datetime:
    """``90d``, ``12h``, ``30m``, ``2w`` -> the moment a key made ``now`` expires (BadInput
    naming ``expires`` otherwise)."""
    return now + parse_duration(value, field="expires")


# --- money --------------------------------------------------------------------------------------


def to_micros(amount: float) -> int:
    return round(amount * MICROS)


def from_micros(micros: int) -> float:
    return round(micros / MICROS, 6)


def parse_prices(value: str | Mapping[str, float]) -> dict[str, int]:
    """``IMAGEGEN_PRICES`` (a JSON object by resolution) -> micro-units by resolution, with
    the defaults for any resolution it leaves out."""
    raw = json.loads(value) if isinstance(value, str) else dict(value)
    if not isinstance(raw, dict):
        raise ValueError('must be a JSON object of prices by resolution, e.g. {"4K": 0.05}')
    known = {name.upper(): name for name in DEFAULT_PRICES}
    prices = {name: to_micros(price) for name, price in DEFAULT_PRICES.items()}
    for name, price in raw.items():
        if str(name).upper() not in known:
            raise ValueError(f"unknown resolution {name!r}; one of {', '.join(DEFAULT_PRICES)}")
        if isinstance(price, bool) or not isinstance(price, int | float) or price < 0:
            raise ValueError(f"the price of {name} must be a number >= 0; got {price!r}")
        prices[known[str(name).upper()]] = to_micros(float(price))
    return prices


def price_of(prices: Mapping[str, int], resolution: str) -> int:
    """What one submission at ``resolution`` is charged (micro-units)."""
    for name, micros in prices.items():
        if name.upper() == resolution.upper():
            return micros
    return max(prices.values())  # an unknown resolution is charged as the dearest


# --- budgets ------------------------------------------------------------------------------------


def day_period(now: datetime) -> str:
    """The budget period keys are UTC calendar days and months."""
    return "day:" + now.strftime("%Y-%m-%d")


def month_period(now: datetime) -> str:
    return "month:" + now.strftime("%Y-%m")


#: The period of a batch's ``max_spend``: the batch's whole life.
WHOLE = "all"


def fits(used: int, price: int, limit: int | None) -> bool:
    """Whether a charge of ``price`` on top of ``used`` stays within ``limit`` (None: none)."""
    return limit is None or used + price <= limit


def crossed_warning(before: int, after: int, limit: int | None) -> bool:
    """Whether going from ``before`` to ``after`` passes :data:`WARN_FRACTION` of ``limit``."""
    if not limit:
        return False
    line = limit * WARN_FRACTION
    return before < line <= after


# --- a tenant's submit rate ---------------------------------------------------------------------


@dataclass(frozen=True)
class RateState:
    """A tenant's own submission bucket: ``rate`` per second, a burst of one second's worth
    (at least one); ``tokens`` None means full (never used)."""

    rate: float
    tokens: float | None
    tokens_at: datetime | None

    @property
    def burst(self) -> float:
        return max(1.0, self.rate)

    def available(self, now: datetime) -> float:
        if self.tokens is None or self.tokens_at is None:
            return self.burst
        elapsed = max((now - self.tokens_at).total_seconds(), 0.0)
        return min(self.burst, self.tokens + elapsed * self.rate)

    def take(self, now: datetime) -> tuple[float | None, float]:
        """Tokens left after one submission and 0, or None and the seconds to wait."""
        tokens = self.available(now)
        if tokens >= 1:
            return tokens - 1, 0.0
        return None, (1 - tokens) / self.rate

    def room(self, now: datetime, horizon_s: float) -> int:
        """Submissions it may make within ``horizon_s`` from ``now``."""
        return int(self.available(now) + self.rate * horizon_s)


# --- fair shares --------------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)


def shares(room: int, weights: Mapping[K, float]) -> dict[K, int]:
    """How many of ``room`` slots each group may take this round: its weight's part, rounded
    up, at least one (a light tenant is slowed, never starved). The sum may pass ``room``:
    callers stop when the room is used, in an order that changes every cycle."""
    total = sum(weights.values())
    if room <= 0 or total <= 0:
        return {group: 0 for group in weights}
    return {group: max(1, math.ceil(room * weight / total)) for group, weight in weights.items()}


def group_weights(tenant_of: Mapping[K, str], tenant_weight: Mapping[str, float]) -> dict[K, float]:
    """Each group's weight: its tenant's weight split evenly between the tenant's groups (a
    tenant with ten batches open gets no more than one with one)."""
    per_tenant: dict[str, int] = {}
    for tenant in tenant_of.values():
        per_tenant[tenant] = per_tenant.get(tenant, 0) + 1
    return {
        group: tenant_weight.get(tenant, 1.0) / per_tenant[tenant]
        for group, tenant in tenant_of.items()
    }


# --- who is calling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """The tenant and key behind a call, and what it may do."""

    tenant: str
    #: ``k_…`` for a database key, ``env:<8 hex>`` for an ``IMAGEGEN_API_TOKENS`` token,
    #: ``local`` for the command line and the Python producer API (whoever can run them holds
    #: the database's credentials).
    key_id: str
    scopes: frozenset[Scope]

    def can(self, scope: Scope) -> bool:
        return grants(self.scopes, scope)

    def sees(self, tenant: str) -> bool:
        """Whether this caller may see (and act on) ``tenant``'s jobs and batches."""
        return tenant == self.tenant or self.can(Scope.OPERATE)

    @property
    def label(self) -> str:
        """How the caller is recorded where one name is kept (``paused_by``)."""
        return f"{self.tenant}/{self.key_id}"


#: The command line and the Python producer API: the default tenant, every scope.
LOCAL = Principal(DEFAULT_TENANT, "local", frozenset(Scope))
