"""Fleet-wide limits as pure functions: token buckets, the adaptive rate, the 429 cool-down,
the circuit breaker and the admission decision for one submission.

Every worker on every host reads and writes the same state (a row per bucket in the database,
see ``worker.store.fleet``); these functions only compute, so the rules are tested without servers.
A submission is admitted when submissions are not paused, the breaker lets it through, no
cool-down is running, the fleet has an in-flight slot for the job's priority and the bucket has
a token. Batch jobs leave ``reserved_for_interactive`` slots and one token for interactive jobs,
so a big backlog never delays an interactive job by more than one dispatch cycle.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from worker.core.settings import Settings


class Breaker(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    #: Open, its wait is over: the next submission is a probe (stored as ``open``).
    HALF_OPEN = "half_open"


class Refused(StrEnum):
    """Why a submission may not go now (the job stays queued, nothing is counted against it)."""

    PAUSED = "paused"
    BREAKER_OPEN = "breaker_open"
    PROBING = "probe_in_flight"
    COOLDOWN = "cooldown"
    IN_FLIGHT = "in_flight_limit"
    RATE = "rate_limit"
    #: The job's tenant or batch budget would be crossed (``store.spend``).
    BUDGET = "budget"
    #: The job's tenant has its ``max_in_flight`` predictions out.
    TENANT_IN_FLIGHT = "tenant_in_flight"
    #: The job's tenant used its ``submit_rate`` for now.
    TENANT_RATE = "tenant_rate"


@dataclass(frozen=True)
class Limits:
    """The configured limits (from :class:`Settings`)."""

    submit_rate: float = 2.0
    submit_burst: int = 10
    max_in_flight: int = 50
    interactive_reserve: int = 5
    poll_rate: float = 20.0
    poll_burst: int = 50
    cooldown_base_s: float = 1.0
    cooldown_max_s: float = 120.0
    rate_min_fraction: float = 0.1
    rate_recovery_s: float = 300.0
    breaker_threshold: int = 5
    breaker_open_s: float = 30.0
    probe_lease_s: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            submit_rate=settings.submit_rate,
            submit_burst=settings.submit_burst,
            max_in_flight=settings.max_in_flight,
            interactive_reserve=settings.reserved_for_interactive,
            poll_rate=settings.poll_rate,
            poll_burst=settings.poll_burst,
            cooldown_base_s=settings.cooldown_base_s,
            cooldown_max_s=settings.cooldown_max_s,
            rate_min_fraction=settings.rate_min_fraction,
            rate_recovery_s=settings.rate_recovery_s,
            breaker_threshold=settings.breaker_threshold,
            breaker_open_s=settings.breaker_open_s,
            probe_lease_s=settings.submit_lease_s,
        )

    def in_flight_cap(self, priority: str) -> int:
        """Slots a job of ``priority`` may fill (batch jobs leave the reserve free)."""
        return self.max_in_flight - (self.interactive_reserve if priority == "batch" else 0)

    def token_reserve(self, priority: str) -> int:
        """Tokens a job of ``priority`` must leave in the bucket."""
        return 1 if priority == "batch" and self.submit_burst > 1 else 0


@dataclass(frozen=True)
class Bucket:
    """One fleet-wide bucket's state: tokens, the adaptive rate, cool-down, pause, breaker."""

    tokens: float
    tokens_at: datetime
    rate_factor: float = 1.0
    rate_changed_at: datetime | None = None
    cooldown_until: datetime | None = None
    strikes: int = 0
    paused: bool = False
    pause_code: str | None = None
    pause_reason: str | None = None
    breaker: Breaker = Breaker.CLOSED
    breaker_failures: int = 0
    breaker_opened_at: datetime | None = None
    breaker_reason: str | None = None
    probe_until: datetime | None = None


# --- rate and tokens ----------------------------------------------------------------------------


def rate_factor(limits: Limits, bucket: Bucket, now: datetime) -> float:
    """The adaptive factor now: cut by 429s, climbing back linearly to 1."""
    if bucket.rate_factor >= 1 or bucket.rate_changed_at is None:
        return min(bucket.rate_factor, 1.0)
    elapsed = max((now - bucket.rate_changed_at).total_seconds(), 0.0)
    climb = (1 - limits.rate_min_fraction) * elapsed / limits.rate_recovery_s
    return min(1.0, bucket.rate_factor + climb)


def refill(bucket: Bucket, now: datetime, rate: float, burst: int) -> float:
    """Tokens in the bucket at ``now``."""
    elapsed = max((now - bucket.tokens_at).total_seconds(), 0.0)
    return min(float(burst), bucket.tokens + elapsed * rate)


def submit_rate(limits: Limits, bucket: Bucket, now: datetime) -> float:
    """Submissions per second the fleet may make now (0: unlimited)."""
    return limits.submit_rate * rate_factor(limits, bucket, now)


def take_token(
    bucket: Bucket, now: datetime, rate: float, burst: int, keep: int = 0
) -> tuple[Bucket, float]:
    """Take one token (leaving ``keep``); the new state and 0, or the state and the wait."""
    if rate <= 0:  # the limit is off
        return bucket, 0.0
    tokens = refill(bucket, now, rate, burst)
    if tokens >= 1 + keep:  # the clock of the bucket never goes back
        return replace(bucket, tokens=tokens - 1, tokens_at=max(now, bucket.tokens_at)), 0.0
    return bucket, (1 + keep - tokens) / rate


def take_up_to(
    bucket: Bucket, now: datetime, rate: float, burst: int, wanted: int
) -> tuple[Bucket, int, float]:
    """Take up to ``wanted`` tokens at once: (new state, tokens taken, 0), or (state, 0, the
    seconds until one is there)."""
    tokens = refill(bucket, now, rate, burst)
    taken = min(wanted, int(tokens))
    if taken < 1:
        return bucket, 0, (1 - tokens) / rate
    return replace(bucket, tokens=tokens - taken, tokens_at=max(now, bucket.tokens_at)), taken, 0.0


# --- admission ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """The answer for one submission: admitted (with the bucket's new state) or refused."""

    bucket: Bucket
    refused: Refused | None = None
    #: When it is worth asking again (seconds), for a refusal.
    retry_in_s: float = 0.0
    #: This submission is the breaker's probe.
    probe: bool = False

    @property
    def admitted(self) -> bool:
        return self.refused is None


def breaker_state(limits: Limits, bucket: Bucket, now: datetime) -> Breaker:
    """closed, open, or half_open (open and its wait is over)."""
    if bucket.breaker is Breaker.CLOSED:
        return Breaker.CLOSED
    opened = bucket.breaker_opened_at or now
    if now >= opened + timedelta(seconds=limits.breaker_open_s):
        return Breaker.HALF_OPEN
    return Breaker.OPEN


def admit(
    limits: Limits, bucket: Bucket, now: datetime, *, priority: str, in_flight: int
) -> Admission:
    """Whether one submission of ``priority`` may go now, with ``in_flight`` predictions out."""
    if bucket.paused:
        return Admission(bucket, Refused.PAUSED, 60.0)
    probe = False
    state = breaker_state(limits, bucket, now)
    if state is Breaker.OPEN:
        opened = bucket.breaker_opened_at or now
        wait = (opened + timedelta(seconds=limits.breaker_open_s) - now).total_seconds()
        return Admission(bucket, Refused.BREAKER_OPEN, max(wait, 0.1))
    if state is Breaker.HALF_OPEN:
        if bucket.probe_until is not None and bucket.probe_until > now:
            return Admission(bucket, Refused.PROBING, (bucket.probe_until - now).total_seconds())
        probe = True
    if bucket.cooldown_until is not None and bucket.cooldown_until > now:
        return Admission(bucket, Refused.COOLDOWN, (bucket.cooldown_until - now).total_seconds())
    if in_flight >= limits.in_flight_cap(priority):
        return Admission(bucket, Refused.IN_FLIGHT, 1.0)
    after, wait = take_token(
        bucket,
        now,
        submit_rate(limits, bucket, now),
        limits.submit_burst,
        keep=limits.token_reserve(priority),
    )
    if wait > 0:
        return Admission(bucket, Refused.RATE, wait)
    if probe:
        after = replace(after, probe_until=now + timedelta(seconds=limits.probe_lease_s))
    return Admission(after, probe=probe)


# --- what the provider said ---------------------------------------------------------------------


def rate_limited(
    limits: Limits,
    bucket: Bucket,
    now: datetime,
    retry_after_s: float | None,
    rng: random.Random | None = None,
) -> Bucket:
    """A 429: every submitter waits (``Retry-After``, else exponential) and the rate halves."""
    strikes = bucket.strikes + 1
    if retry_after_s:
        wait = min(retry_after_s, limits.cooldown_max_s)
    else:
        ceiling = min(limits.cooldown_max_s, limits.cooldown_base_s * 2 ** (strikes - 1))
        wait = (rng or random).uniform(ceiling / 2, ceiling)
    until = now + timedelta(seconds=wait)
    if bucket.cooldown_until is not None and bucket.cooldown_until > until:
        until = bucket.cooldown_until
    factor = max(limits.rate_min_fraction, rate_factor(limits, bucket, now) / 2)
    return replace(
        bucket,
        strikes=strikes,
        cooldown_until=until,
        rate_factor=factor,
        rate_changed_at=now,
        tokens=0.0,
        tokens_at=until,
    )


def slowed_down(limits: Limits, bucket: Bucket, now: datetime) -> Bucket:
    """A 429 on a poll: the fleet polls slower (the rate halves, then climbs back), without a
    cool-down: one prediction polled too often must not stop the polls of every other one."""
    factor = max(limits.rate_min_fraction, rate_factor(limits, bucket, now) / 2)
    return replace(bucket, rate_factor=factor, rate_changed_at=now)


def poll_rate(limits: Limits, bucket: Bucket, now: datetime) -> float:
    """Polls per second the fleet may make now (0: unlimited)."""
    return limits.poll_rate * rate_factor(limits, bucket, now)


def submit_failed(limits: Limits, bucket: Bucket, now: datetime, reason: str) -> Bucket:
    """A 5xx, timeout or unreachable provider: count it; enough in a row open the breaker."""
    failures = bucket.breaker_failures + 1
    probing = breaker_state(limits, bucket, now) is Breaker.HALF_OPEN
    if probing or (bucket.breaker is Breaker.CLOSED and failures >= limits.breaker_threshold):
        return replace(
            bucket,
            breaker=Breaker.OPEN,
            breaker_failures=failures,
            breaker_opened_at=now,
            breaker_reason=reason,
            probe_until=None,
        )
    return replace(bucket, breaker_failures=failures)


def submit_succeeded(bucket: Bucket) -> Bucket:
    """An accepted submission closes the breaker and ends the run of 429s."""
    return replace(
        bucket,
        breaker=Breaker.CLOSED,
        breaker_failures=0,
        breaker_opened_at=None,
        breaker_reason=None,
        probe_until=None,
        strikes=0,
    )


def needs_success_write(bucket: Bucket) -> bool:
    """Whether :func:`submit_succeeded` would change anything (most of the time it does not)."""
    return bucket != submit_succeeded(bucket)


# --- the dispatcher's budget --------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """How many submit messages one dispatch cycle may send: up to ``interactive`` in all, of
    which up to ``batch`` minus the interactive ones sent may be batch jobs."""

    interactive: int
    batch: int
    refused: Refused | None = None

    @property
    def total(self) -> int:
        return self.interactive + self.batch


def dispatch_budget(
    limits: Limits,
    bucket: Bucket,
    now: datetime,
    *,
    in_flight: int,
    outstanding: int,
    horizon_s: float,
    max_messages: int,
) -> Budget:
    """Messages worth sending now so the fleet stays busy until the next cycle (``horizon_s``)
    without exceeding any limit: submissions already sent but not yet claimed
    (``outstanding``) count against the slots and the tokens."""
    if bucket.paused:
        return Budget(0, 0, Refused.PAUSED)
    state = breaker_state(limits, bucket, now)
    if state is Breaker.OPEN:
        return Budget(0, 0, Refused.BREAKER_OPEN)
    if state is Breaker.HALF_OPEN:  # one probe, when none is out
        probing = bucket.probe_until is not None and bucket.probe_until > now
        return Budget(0, 0, Refused.PROBING) if probing or outstanding else Budget(1, 1)
    if bucket.cooldown_until is not None and bucket.cooldown_until > now:
        return Budget(0, 0, Refused.COOLDOWN)
    busy = in_flight + outstanding
    slots = max(limits.max_in_flight - busy, 0)
    batch_slots = max(limits.in_flight_cap("batch") - busy, 0)
    rate = submit_rate(limits, bucket, now)
    if rate > 0:
        tokens = int(refill(bucket, now, rate, limits.submit_burst) + rate * horizon_s)
        tokens = max(tokens - outstanding, 0)
    else:
        tokens = max_messages
    interactive = min(slots, tokens, max_messages)
    batch = min(batch_slots, max(tokens - limits.token_reserve("batch"), 0), max_messages)
    if interactive == 0:
        return Budget(0, 0, Refused.IN_FLIGHT if slots == 0 else Refused.RATE)
    return Budget(interactive, batch)


def token_eta(
    limits: Limits, bucket: Bucket, now: datetime, index: int, priority: str = "batch"
) -> float:
    """Seconds until the ``index``-th (0-based) submission from now will find its token."""
    rate = submit_rate(limits, bucket, now)
    if rate <= 0:
        return 0.0
    tokens = refill(bucket, now, rate, limits.submit_burst)
    needed = index + 1 + limits.token_reserve(priority)
    return max(0.0, (needed - tokens) / rate)
