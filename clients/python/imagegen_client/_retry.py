"""When to send a request again, and how long to wait first: pure rules shared by ``Client``
and ``AsyncClient``.

A request is *safe* to repeat when repeating it cannot do the work twice: reads, cancels, and
every POST that carries an ``Idempotency-Key`` (the server answers the first outcome again).
Safe requests are retried on any transport error, 429 and 5xx. Any other request is retried
only when it cannot have reached the application: the connection was never made, or the
answer was 429 (refused before any work).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

#: Transport errors raised before the request left this process: never processed.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: 5xx answers worth another try (a proxy, a restart, an overload).
RETRY_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` tries after the first; exponential backoff with full jitter from
    ``backoff_base_s`` doubling up to ``backoff_max_s``; a ``Retry-After`` is honoured as
    given, unless it asks for more than ``max_retry_after_s`` (then the error is raised)."""

    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0

    def backoff_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)] (attempt 0 is the first
        retry), so clients that failed together do not come back together."""
        return rand() * min(self.backoff_max_s, self.backoff_base_s * 2**attempt)

    def after_error(self, error: Exception, attempt: int, *, safe: bool) -> float | None:
        """Seconds to wait before trying again after a transport error, or None: give up."""
        if attempt >= self.max_retries or not isinstance(error, httpx.TransportError):
            return None
        if safe or isinstance(error, NOT_SENT):
            return self.backoff_s(attempt)
        return None

    def after_status(
        self, status: int, attempt: int, *, safe: bool, retry_after_s: float | None
    ) -> float | None:
        """Seconds to wait before trying again after an answer, or None: give up."""
        if attempt >= self.max_retries:
            return None
        if status == 429:
            if retry_after_s is None:
                return self.backoff_s(attempt)
            return retry_after_s if retry_after_s <= self.max_retry_after_s else None
        if status in RETRY_STATUSES and safe:
            if retry_after_s is not None and retry_after_s <= self.max_retry_after_s:
                return retry_after_s
            return self.backoff_s(attempt)
        return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def poll_delays(
    first_s: float, max_s: float, rand: Callable[[], float] = random.random
) -> Callable[[int], float]:
    """The wait before poll n of ``wait``: ``first_s`` growing by half each time up to
    ``max_s``, each spread by ±20 % so many waiters do not poll in step."""

    def delay(n: int) -> float:
        return min(max_s, first_s * 1.5**n) * (0.8 + 0.4 * rand())

    return delay
