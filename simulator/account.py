"""The account's limits: a submit rate limit and a concurrency limit, with a record of what it saw.

The provider publishes per-tier limits on images per minute and on concurrent tasks; work over
the concurrency limit may wait in ``created`` instead of being rejected. The simulator asks its
limits twice per submit: whether to admit it (a token bucket of ``submit_rate`` per second and
``submit_burst``, and in ``reject`` mode the concurrency limit), and when the admitted prediction
starts ``processing`` (in ``queue`` mode, when one of ``max_concurrency`` slots frees up).

Every admitted submit is recorded, so tests can check that a fleet of workers never exceeded the
limits: the highest number of predictions in flight (created or processing) and the most
submits seen in any one-second window.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.config import SimulatorConfig

_INF = math.inf


@dataclass(frozen=True)
class Refusal:
    """Why a submit was turned away: the submit fault to answer with, and its ARG."""

    fault: str
    arg: str | None
    reason: str


class AccountLimits:
    """Rate and concurrency limits read from the current config on every call (thread-safe)."""

    def __init__(self, config: Callable[[], SimulatorConfig]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget every admitted prediction and the record."""
        with self._lock:
            self._tokens: float | None = None
            self._tokens_at = 0.0
            self._ends: list[float] = []  # when each admitted prediction is done (heap)
            self._slots: list[float] = []  # when each concurrency slot frees up (heap)
            self._recent: deque[float] = deque()  # admitted submits of the last second
            self._max_in_flight = 0
            self._max_per_second = 0
            self._admitted = 0
            self._refused = {"rate": 0, "concurrency": 0}

    def admit(self, now: float) -> Refusal | None:
        """None to admit the submit, or the refusal (a 429) when a limit is reached."""
        config = self._config()
        with self._lock:
            self._forget_done(now)
            limit = config.max_concurrency
            if (
                limit is not None
                and config.over_concurrency == "reject"
                and len(self._ends) >= limit
            ):
                self._refused["concurrency"] += 1
                return Refusal("http_429", None, "concurrency")
            if config.submit_rate is not None:
                wait = self._take_token(now, config.submit_rate, config.submit_burst)
                if wait > 0:
                    self._refused["rate"] += 1
                    after = str(max(1, math.ceil(wait))) if config.rate_limit_retry_after else None
                    return Refusal("http_429", after, "rate")
            self._admitted += 1
            self._recent.append(now)
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            self._max_per_second = max(self._max_per_second, len(self._recent))
            return None

    def start_at(self, now: float, ready_at: float, duration_s: float | None) -> float:
        """When an admitted prediction starts processing, and remember when it is done.

        ``duration_s`` None means it never finishes (stuck) and holds its slot for good."""
        config = self._config()
        with self._lock:
            start = ready_at
            limit = config.max_concurrency
            if limit is not None and config.over_concurrency == "queue":
                if len(self._slots) >= limit:
                    start = max(ready_at, heapq.heappop(self._slots))
                heapq.heappush(self._slots, _end(start, duration_s))
            heapq.heappush(self._ends, _end(start, duration_s))
            self._max_in_flight = max(self._max_in_flight, len(self._ends))
            return start

    def record(self, now: float) -> dict[str, Any]:
        """What the limits saw (``/_sim/stats`` ``limits``)."""
        with self._lock:
            self._forget_done(now)
            return {
                "max_in_flight_seen": self._max_in_flight,
                "max_submits_per_second_seen": self._max_per_second,
                "in_flight": len(self._ends),
                "admitted": self._admitted,
                "refused": dict(self._refused),
            }

    def _forget_done(self, now: float) -> None:
        while self._ends and self._ends[0] <= now:
            heapq.heappop(self._ends)

    def _take_token(self, now: float, rate: float, burst: int) -> float:
        """Take one token; 0 when taken, else the seconds until one is there."""
        tokens = (
            burst
            if self._tokens is None
            else min(burst, self._tokens + (now - self._tokens_at) * rate)
        )
        self._tokens, self._tokens_at = tokens, now
        if tokens >= 1:
            self._tokens = tokens - 1
            return 0.0
        return (1 - tokens) / rate


def _end(start: float, duration_s: float | None) -> float:
    return _INF if duration_s is None else start + duration_s
