"""The retry decision, as pure functions: (error, attempt) -> retry after N seconds, or stop.

Backoff is exponential with full jitter and a cap, computed in one place; ``Retry-After`` from
the provider is honoured as a floor. Separate budgets apply to submit, poll and transfer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from worker.core.errors import ImagegenError, ProviderError, RateLimited, TransferError

Step = Literal["submit", "poll", "transfer"]


@dataclass(frozen=True)
class Retry:
    """Try the step again after ``delay_s`` seconds."""

    delay_s: float
    #: The failed attempt may have created a paid prediction (counted on the job).
    ambiguous: bool = False
    #: The attempt does not count against the job's budget (not the job's fault).
    refund: bool = False


@dataclass(frozen=True)
class Stop:
    """End the job as failed with this named code and message."""

    code: str
    message: str
    ambiguous: bool = False


Decision = Retry | Stop


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 2.0
    max_s: float = 300.0
    max_submit_attempts: int = 6
    max_poll_errors: int = 20
    max_transfer_attempts: int = 5
    #: What to do after a submission that may have reached the provider: "retry" or "fail".
    ambiguous_submit: str = "retry"
    fleet_pause_s: float = 60.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter exponential backoff for the ``attempt``-th failure (1-based), capped."""
        ceiling = min(self.max_s, self.base_s * 2 ** max(attempt - 1, 0))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def _delay(self, error: ImagegenError, attempt: int, rng: random.Random | None) -> float:
        delay = self.backoff(attempt, rng)
        retry_after = getattr(error, "retry_after_s", None)
        return max(delay, retry_after) if retry_after else delay

    def decide(
        self, step: Step, error: ImagegenError, attempt: int, rng: random.Random | None = None
    ) -> Decision:
        """What to do after ``error`` ended the ``attempt``-th try of ``step``."""
        if isinstance(error, ProviderError) and error.fleet_wide:
            # not the job's fault: wait without spending the job's budget (submissions pause
            # fleet-wide; a poll asks again soon, so it sees the fix when it comes)
            wait = self.fleet_pause_s if step == "submit" else self.backoff(attempt, rng)
            return Retry(max(wait, error.retry_after_s or 0), refund=True)
        if isinstance(error, RateLimited):  # the fleet cools down; the job keeps its budget
            return Retry(self._delay(error, attempt, rng), refund=True)
        if step == "poll" and isinstance(error, ProviderError) and error.outage:
            # the prediction exists and is paid for: a provider that cannot answer is waited
            # out (the job's deadline bounds the wait), never the reason to abandon it
            return Retry(self._delay(error, attempt, rng), refund=True)
        if not getattr(error, "retryable", False):
            return Stop(error.code, error.message)
        ambiguous = step == "submit" and isinstance(error, ProviderError) and error.ambiguous
        if ambiguous and self.ambiguous_submit == "fail":
            return Stop("ambiguous_submit", _ambiguous_message(error), ambiguous=True)
        if attempt >= self._budget(step, error):
            # a transfer that keeps failing says where it failed (output or storage)
            code = error.code if isinstance(error, TransferError) else "retries_exhausted"
            return Stop(
                code,
                f"gave up after {attempt} {step} attempts: {error.message}",
                ambiguous=ambiguous,
            )
        return Retry(self._delay(error, attempt, rng), ambiguous=ambiguous)

    def _budget(self, step: Step, error: ImagegenError) -> int:
        if step == "submit":
            return self.max_submit_attempts
        if step == "poll":
            return self.max_poll_errors
        return self.max_transfer_attempts


def _ambiguous_message(error: ImagegenError) -> str:
    return (
        "the submission may have created a prediction at the provider and is not retried "
        f"(IMAGEGEN_AMBIGUOUS_SUBMIT=fail): {error.message}"
    )
