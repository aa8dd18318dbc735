"""The fleet-wide limit rules, as pure functions: buckets, admission, cool-down, breaker, budget."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.core import limits as rules
from worker.core.limits import Breaker, Bucket, Limits, Refused

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIMITS = Limits(
    submit_rate=2.0,
    submit_burst=4,
    max_in_flight=10,
    interactive_reserve=2,
    cooldown_base_s=1.0,
    cooldown_max_s=60.0,
    rate_min_fraction=0.1,
    rate_recovery_s=90.0,
    breaker_threshold=3,
    breaker_open_s=30.0,
    probe_lease_s=120.0,
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def full() -> Bucket:
    return Bucket(tokens=1e9, tokens_at=T0)


def admit(
    bucket: Bucket,
    seconds: float = 0.0,
    *,
    priority: str = "interactive",
    in_flight: int = 0,
    limits: Limits = LIMITS,
) -> rules.Admission:
    return rules.admit(limits, bucket, at(seconds), priority=priority, in_flight=in_flight)


# --- buckets ------------------------------------------------------------------------------------


def test_a_full_bucket_lets_the_burst_through_then_the_rate() -> None:
    bucket, taken = full(), 0
    while (admission := admit(bucket)).admitted:
        bucket, taken = admission.bucket, taken + 1
    assert taken == 4 and admission.refused is Refused.RATE
    assert admission.retry_in_s == pytest.approx(0.5)
    assert admit(bucket, 0.5).admitted and not admit(admit(bucket, 0.5).bucket, 0.5).admitted


def test_batch_jobs_leave_a_token_and_the_reserved_slots_to_interactive_ones() -> None:
    one_token = Bucket(tokens=1.0, tokens_at=T0)
    assert admit(one_token, priority="batch").refused is Refused.RATE
    assert admit(one_token, priority="interactive").admitted
    assert admit(full(), priority="batch", in_flight=8).refused is Refused.IN_FLIGHT
    assert admit(full(), priority="interactive", in_flight=8).admitted
    assert admit(full(), priority="interactive", in_flight=10).refused is Refused.IN_FLIGHT


def test_a_zero_rate_means_no_rate_limit() -> None:
    unlimited = replace(LIMITS, submit_rate=0.0)
    empty = Bucket(tokens=0.0, tokens_at=T0)
    assert admit(empty, limits=unlimited).admitted


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=0.6), min_size=1, max_size=200),
    st.floats(min_value=0.2, max_value=50),
    st.integers(min_value=1, max_value=20),
)
def test_no_window_ever_sees_more_than_rate_times_length_plus_burst(
    gaps: list[float], rate: float, burst: int
) -> None:
    limits = replace(LIMITS, submit_rate=rate, submit_burst=burst, max_in_flight=10**6)
    bucket, now, admitted = Bucket(tokens=1e9, tokens_at=T0), 0.0, []
    for gap in gaps:
        now += gap
        admission = admit(bucket, now, limits=limits)
        if admission.admitted:
            bucket = admission.bucket
            admitted.append(now)
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= rate * (admitted[j] - start) + burst + 1e-6


# --- pause, cool-down, adaptive rate ------------------------------------------------------------


def test_a_pause_refuses_everything() -> None:
    paused = replace(full(), paused=True, pause_code="auth")
    assert admit(paused).refused is Refused.PAUSED
    budget = rules.dispatch_budget(
        LIMITS, paused, T0, in_flight=0, outstanding=0, horizon_s=1, max_messages=100
    )
    assert budget.total == 0 and budget.refused is Refused.PAUSED


def test_a_429_honours_retry_after_and_halves_the_rate() -> None:
    after = rules.rate_limited(LIMITS, full(), T0, 7.0)
    assert after.cooldown_until == at(7) and after.strikes == 1 and after.rate_factor == 0.5
    assert admit(after, 6.9).refused is Refused.COOLDOWN
    assert not admit(after, 7.0).admitted  # the bucket starts empty after a cool-down
    assert admit(after, 7.0 + 1 / (2.0 * 0.5) + 0.2).admitted


def test_429s_without_retry_after_back_off_exponentially_up_to_the_cap() -> None:
    bucket, rng, waits = full(), random.Random(3), []
    for _ in range(10):
        bucket = rules.rate_limited(LIMITS, bucket, T0, None, rng)
        waits.append((bucket.cooldown_until - T0).total_seconds())
    assert waits == sorted(waits) and waits[0] <= 1.0 and waits[-1] <= 60.0
    assert waits[-1] >= 30.0
    assert bucket.rate_factor == pytest.approx(0.1)  # never below the floor


def test_the_rate_recovers_slowly_after_429s() -> None:
    slowed = rules.rate_limited(LIMITS, full(), T0, 1.0)
    assert rules.submit_rate(LIMITS, slowed, T0) == pytest.approx(1.0)
    assert rules.submit_rate(LIMITS, slowed, at(20)) == pytest.approx(1.4)  # +0.9 per 90 s
    assert rules.submit_rate(LIMITS, slowed, at(500)) == pytest.approx(2.0)


def test_success_ends_the_run_of_429s_only_when_there_is_one() -> None:
    assert not rules.needs_success_write(full())
    struck = rules.rate_limited(LIMITS, full(), T0, 1.0)
    assert rules.needs_success_write(struck)
    assert rules.submit_succeeded(struck).strikes == 0


# --- breaker ------------------------------------------------------------------------------------


def test_a_run_of_failures_opens_the_breaker_then_one_probe_goes() -> None:
    bucket = full()
    for failure in range(3):
        assert bucket.breaker is Breaker.CLOSED, failure
        bucket = rules.submit_failed(LIMITS, bucket, T0, "provider_server_error: 503")
    assert bucket.breaker is Breaker.OPEN
    assert admit(bucket, 10).refused is Refused.BREAKER_OPEN
    probe = admit(bucket, 31)
    assert probe.admitted and probe.probe
    assert admit(probe.bucket, 31).refused is Refused.PROBING  # one probe at a time
    reopened = rules.submit_failed(LIMITS, probe.bucket, at(32), "provider_timeout")
    assert rules.breaker_state(LIMITS, reopened, at(33)) is Breaker.OPEN
    probe = admit(reopened, 63)
    assert probe.admitted and probe.probe
    closed = rules.submit_succeeded(probe.bucket)
    assert closed.breaker is Breaker.CLOSED and closed.breaker_failures == 0
    assert not admit(closed, 63).probe


def test_a_lost_probe_lets_another_go_when_its_lease_ends() -> None:
    opened = replace(full(), breaker=Breaker.OPEN, breaker_opened_at=T0)
    probe = admit(opened, 31)
    assert admit(probe.bucket, 31 + 119).refused is Refused.PROBING
    assert admit(probe.bucket, 31 + 121).probe


def test_a_success_in_between_resets_the_failure_count() -> None:
    bucket = rules.submit_failed(LIMITS, full(), T0, "x")
    bucket = rules.submit_failed(LIMITS, bucket, T0, "x")
    bucket = rules.submit_succeeded(bucket)
    bucket = rules.submit_failed(LIMITS, bucket, T0, "x")
    assert bucket.breaker is Breaker.CLOSED and bucket.breaker_failures == 1


# --- the dispatcher's budget --------------------------------------------------------------------


def budget(
    bucket: Bucket,
    *,
    in_flight: int = 0,
    outstanding: int = 0,
    seconds: float = 0,
    limits: Limits = LIMITS,
    horizon_s: float = 1.0,
) -> rules.Budget:
    return rules.dispatch_budget(
        limits,
        bucket,
        at(seconds),
        in_flight=in_flight,
        outstanding=outstanding,
        horizon_s=horizon_s,
        max_messages=1000,
    )


def test_the_budget_fills_free_slots_with_the_tokens_of_the_next_interval() -> None:
    assert budget(full()) == rules.Budget(interactive=6, batch=5)  # 4 + 2 tokens; 1 kept
    assert budget(full(), in_flight=7) == rules.Budget(interactive=3, batch=1)
    assert budget(full(), in_flight=5, outstanding=3).total == 2
    assert budget(full(), in_flight=10).refused is Refused.IN_FLIGHT


def test_the_budget_counts_sent_messages_against_the_tokens() -> None:
    unlimited_slots = replace(LIMITS, max_in_flight=1000, interactive_reserve=0)
    assert budget(full(), outstanding=6, limits=unlimited_slots).refused is Refused.RATE
    assert budget(full(), outstanding=6, limits=unlimited_slots, horizon_s=3).interactive == 4


def test_the_budget_sends_one_probe_when_the_breaker_may_close() -> None:
    opened = replace(full(), breaker=Breaker.OPEN, breaker_opened_at=T0)
    assert budget(opened, seconds=10).refused is Refused.BREAKER_OPEN
    assert budget(opened, seconds=31) == rules.Budget(1, 1)
    assert budget(opened, seconds=31, outstanding=1).total == 0


def test_token_etas_spread_the_messages_over_the_interval() -> None:
    empty = Bucket(tokens=0.0, tokens_at=T0)
    etas = [rules.token_eta(LIMITS, empty, T0, index, "interactive") for index in range(3)]
    assert etas == pytest.approx([0.5, 1.0, 1.5])
    assert rules.token_eta(LIMITS, empty, T0, 0, "batch") == pytest.approx(1.0)
    assert rules.token_eta(LIMITS, full(), T0, 2) == 0.0


def test_a_429_on_a_poll_slows_polls_down_without_stopping_them() -> None:
    limits = replace(LIMITS, poll_rate=10.0)
    slowed = rules.slowed_down(limits, full(), T0)
    assert slowed.cooldown_until is None and slowed.rate_factor == 0.5
    assert rules.poll_rate(limits, slowed, T0) == pytest.approx(5.0)
    assert rules.poll_rate(limits, slowed, at(90)) == pytest.approx(10.0)


def test_a_block_of_tokens_takes_what_is_there_up_to_the_block() -> None:
    bucket = Bucket(tokens=3.5, tokens_at=T0)
    after, taken, wait = rules.take_up_to(bucket, T0, 10.0, 50, 5)
    assert (taken, wait) == (3, 0.0) and after.tokens == pytest.approx(0.5)
    _, taken, wait = rules.take_up_to(after, T0, 10.0, 50, 5)
    assert taken == 0 and wait == pytest.approx(0.05)
