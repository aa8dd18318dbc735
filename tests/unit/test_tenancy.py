"""Tenants' pure rules: scopes, key lifetimes, the price table, budget guards, fair shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.core.errors import BadInput
from worker.core.tenancy import (
    DEFAULT_PRICES,
    Principal,
    RateState,
    Scope,
    check_tenant,
    crossed_warning,
    day_period,
    fits,
    from_micros,
    grants,
    group_weights,
    month_period,
    parse_expiry,
    parse_prices,
    parse_scopes,
    price_of,
    shares,
    to_micros,
)

NOW = datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("read", {Scope.READ}),
        ("read,produce", {Scope.READ, Scope.PRODUCE}),
        (" Produce , read ,", {Scope.READ, Scope.PRODUCE}),
        (["operate", "admin"], {Scope.OPERATE, Scope.ADMIN}),
    ],
)
def test_parse_scopes(given: str | list[str], expected: set[Scope]) -> None:
    assert parse_scopes(given) == expected


@pytest.mark.parametrize("given", ["", " , ", "read,write", "root"])
def test_parse_scopes_refuses_unknown_or_none(given: str) -> None:
    with pytest.raises(ValueError, match="read, produce, operate, admin"):
        parse_scopes(given)


@pytest.mark.parametrize(
    ("scopes", "needed", "allowed"),
    [
        ({Scope.READ}, Scope.READ, True),
        ({Scope.READ}, Scope.PRODUCE, False),
        ({Scope.PRODUCE}, Scope.READ, False),
        ({Scope.OPERATE}, Scope.READ, True),
        ({Scope.OPERATE}, Scope.PRODUCE, False),
        ({Scope.OPERATE}, Scope.ADMIN, False),
        ({Scope.ADMIN}, Scope.OPERATE, True),
        ({Scope.ADMIN}, Scope.PRODUCE, True),
    ],
)
def test_what_a_scope_grants(scopes: set[Scope], needed: Scope, allowed: bool) -> None:
    assert grants(scopes, needed) is allowed


def test_a_principal_sees_its_own_tenant_and_an_operator_every_one() -> None:
    reader = Principal("search", "k_1", frozenset({Scope.READ}))
    operator = Principal("ops", "k_2", frozenset({Scope.OPERATE}))
    assert reader.sees("search") and not reader.sees("ads")
    assert operator.sees("ads") and operator.label == "ops/k_2"


@pytest.mark.parametrize(
    ("given", "after"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
     ("2w", timedelta(weeks=2)), ("1.5d", timedelta(hours=36))],
)  # fmt: skip
def test_parse_expiry(given: str, after: timedelta) -> None:
    assert parse_expiry(given, NOW) == NOW + after


@pytest.mark.parametrize("given", ["", "90", "-1d", "0d", "tomorrow", "3y"])
def test_parse_expiry_refuses(given: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_expiry(given, NOW)
    assert caught.value.problems[0][0] == "expires"


@pytest.mark.parametrize("name", ["default", "search-team", "a", "nightly_2.v1"])
def test_tenant_names(name: str) -> None:
    assert check_tenant(name) == name


@pytest.mark.parametrize("name", ["", "Search", "-x", "a b", "x" * 64, "é"])
def test_bad_tenant_names(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case"):
        check_tenant(name)


def test_prices_default_and_override_in_micro_units() -> None:
    assert parse_prices("{}") == {"1080p": 20_000, "2K": 30_000, "4K": 50_000}
    assert parse_prices('{"4k": 0.08, "1080P": 0}') == {"1080p": 0, "2K": 30_000, "4K": 80_000}
    assert set(DEFAULT_PRICES) == {"1080p", "2K", "4K"}


@pytest.mark.parametrize(
    "given", ['{"8K": 1}', '{"4K": -1}', '{"4K": "cheap"}', '{"4K": true}', "[1, 2]"]
)
def test_prices_refused(given: str) -> None:
    with pytest.raises(ValueError):
        parse_prices(given)


def test_price_of_any_letter_case_and_the_dearest_for_the_unknown() -> None:
    prices = parse_prices("{}")
    assert price_of(prices, "2k") == 30_000
    assert price_of(prices, "8K") == 50_000


def test_money_round_trips_exactly() -> None:
    assert sum([to_micros(0.1)] * 3) == to_micros(0.3)  # 0.1 * 3 != 0.3 in floats
    assert from_micros(to_micros(12.345678)) == 12.345678


def test_budget_guard_allows_the_last_unit_and_no_more() -> None:
    assert fits(used=80, price=20, limit=100)
    assert not fits(used=81, price=20, limit=100)
    assert fits(used=10**12, price=1, limit=None)


@pytest.mark.parametrize(
    ("before", "after", "limit", "warned"),
    [(70, 80, 100, True), (79, 81, 100, True), (80, 90, 100, False), (10, 20, 100, False),
     (0, 100, None, False), (0, 0, 0, False)],
)  # fmt: skip
def test_warning_at_80_percent_once(
    before: int, after: int, limit: int | None, warned: bool
) -> None:
    assert crossed_warning(before, after, limit) is warned


def test_periods_are_utc_days_and_months() -> None:
    assert (day_period(NOW), month_period(NOW)) == ("day:2026-12-02", "month:2026-12")
    assert day_period(NOW + timedelta(seconds=1)) == "day:2026-12-03"


def test_shares_follow_weights_and_never_starve_a_light_group() -> None:
    assert shares(8, {"a": 3.0, "b": 1.0}) == {"a": 6, "b": 2}
    assert shares(3, {"a": 100.0, "b": 1.0}) == {"a": 3, "b": 1}
    assert shares(0, {"a": 1.0}) == {"a": 0}
    # equal weights: the dispatcher's old even split (rounded up)
    assert shares(10, {"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 4, "b": 4, "c": 4}


def test_a_tenant_weight_is_split_between_its_groups() -> None:
    groups = {("a", 1): "a", ("a", 2): "a", ("b", None): "b"}
    assert group_weights(groups, {"a": 2.0, "b": 1.0}) == {
        ("a", 1): 1.0,
        ("a", 2): 1.0,
        ("b", None): 1.0,
    }
    assert group_weights({"x": "unknown"}, {}) == {"x": 1.0}


def test_a_tenants_submit_rate_bucket() -> None:
    fresh = RateState(rate=2.0, tokens=None, tokens_at=None)
    assert fresh.take(NOW) == (1.0, 0.0)  # full: a burst of one second's worth
    empty = RateState(rate=2.0, tokens=0.0, tokens_at=NOW)
    left, wait = empty.take(NOW)
    assert left is None and wait == pytest.approx(0.5)
    assert empty.take(NOW + timedelta(seconds=0.5))[0] == pytest.approx(0.0)
    assert empty.available(NOW + timedelta(hours=1)) == 2.0  # capped at the burst
    assert empty.room(NOW, horizon_s=1.0) == 2
    slow = RateState(rate=0.2, tokens=None, tokens_at=None)
    assert slow.burst == 1.0 and slow.take(NOW) == (0.0, 0.0)
