import random

import pytest

from worker.core import errors as e
from worker.core.retry import Retry, RetryPolicy, Stop

POLICY = RetryPolicy(
    base_s=2,
    max_s=60,
    max_submit_attempts=4,
    max_poll_errors=5,
    max_transfer_attempts=3,
    ambiguous_submit="retry",
    fleet_pause_s=30,
)


@pytest.mark.parametrize(
    ("step", "error", "attempt", "expected"),
    [
        ("submit", e.ProviderUnreachable(), 1, Retry),
        ("submit", e.ProviderUnreachable(), 4, Stop),
        ("submit", e.ProviderServerError(status_code=502), 1, Retry),
        ("submit", e.RateLimited(retry_after_s=7), 1, Retry),
        ("submit", e.RateLimited(), 99, Retry),  # the fleet cools down; never the job's fault
        ("submit", e.InvalidRequest(), 1, Stop),
        ("submit", e.ContentPolicyViolation(), 1, Stop),
        ("submit", e.AuthenticationFailed(), 99, Retry),
        ("submit", e.PermissionDenied(), 99, Retry),
        ("poll", e.ProviderServerError(), 4, Retry),
        ("poll", e.ProviderServerError(), 99, Retry),  # an outage: waited out, not counted
        ("poll", e.ProviderProtocolError(), 4, Retry),
        ("poll", e.ProviderProtocolError(), 5, Stop),
        ("poll", e.PredictionNotFound(), 1, Stop),
        ("transfer", e.OutputCorrupt(), 2, Retry),
        ("transfer", e.OutputCorrupt(), 3, Stop),
        ("transfer", e.OutputExpired(), 1, Stop),
        ("transfer", e.StorageError(), 1, Retry),
    ],
)
def test_decision_table(step, error, attempt, expected) -> None:
    assert isinstance(POLICY.decide(step, error, attempt, random.Random(1)), expected)


def test_terminal_errors_keep_their_code() -> None:
    decision = POLICY.decide("submit", e.ContentPolicyViolation("Input may not meet"), 1)
    assert decision == Stop("content_policy", "Input may not meet")


def test_exhausted_transfer_says_where_it_failed() -> None:
    assert POLICY.decide("transfer", e.StorageError("s3 down"), 3).code == "storage_error"
    assert POLICY.decide("transfer", e.OutputCorrupt(), 3).code == "output_unavailable"
    assert POLICY.decide("submit", e.ProviderUnreachable(), 4).code == "retries_exhausted"


def test_fleet_wide_errors_wait_without_spending_the_budget() -> None:
    decision = POLICY.decide("submit", e.PermissionDenied("insufficient balance"), 1)
    assert decision == Retry(30, refund=True)


@pytest.mark.parametrize(
    "error", [e.ProviderServerError(status_code=503), e.ProviderTimeout(), e.ProviderUnreachable()]
)
def test_a_provider_outage_never_spends_a_paid_predictions_poll_budget(error) -> None:
    # a poll that meets an unavailable provider retries without counting against the job
    decision = POLICY.decide("poll", error, POLICY.max_poll_errors, random.Random(3))
    assert isinstance(decision, Retry) and decision.refund
    # while the same errors on a submit are counted (nothing was paid for yet)
    assert not POLICY.decide("submit", error, 1, random.Random(3)).refund


def test_rate_limits_wait_without_spending_the_budget() -> None:
    decision = POLICY.decide("poll", e.RateLimited(retry_after_s=3), 5)
    assert isinstance(decision, Retry) and decision.refund and decision.delay_s >= 3


def test_ambiguous_submit_is_flagged_and_obeys_the_policy() -> None:
    sent = e.ProviderTimeout()
    assert POLICY.decide("submit", sent, 1).ambiguous
    assert not POLICY.decide("submit", e.ProviderUnreachable(), 1).ambiguous
    assert not POLICY.decide("poll", sent, 1).ambiguous
    strict = RetryPolicy(ambiguous_submit="fail")
    decision = strict.decide("submit", sent, 1)
    assert isinstance(decision, Stop) and decision.ambiguous
    assert decision.code == "ambiguous_submit"


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_is_jittered_and_capped(attempt: int) -> None:
    rng = random.Random(attempt)
    ceiling = min(60, 2 * 2 ** (attempt - 1))
    delays = [POLICY.backoff(attempt, rng) for _ in range(50)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


def test_retry_after_is_a_floor() -> None:
    decision = POLICY.decide("submit", e.RateLimited(retry_after_s=45), 1, random.Random(0))
    assert isinstance(decision, Retry) and decision.delay_s >= 45


@pytest.mark.parametrize(
    "error",
    [e.RateLimited(), e.InvalidRequest(), e.ContentPolicyViolation(), e.AuthenticationFailed()],
)
def test_definite_refusals_are_not_ambiguous(error) -> None:
    decision = POLICY.decide("submit", error, 1)
    assert not decision.ambiguous
