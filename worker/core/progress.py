"""Batch progress: how fast jobs finish and when the rest will be done. Pure, no I/O."""

from __future__ import annotations

#: Throughput is measured over the jobs finished in this recent window when there are any.
RATE_WINDOW_S = 60.0


def rate_per_s(
    *, done: int, elapsed_s: float, recent_done: int, window_s: float = RATE_WINDOW_S
) -> float:
    """Jobs finished per second: over the recent window if any finished in it, else overall."""
    if elapsed_s <= 0:
        return 0.0
    if recent_done > 0:
        return recent_done / min(window_s, elapsed_s)
    return done / elapsed_s


def eta_s(*, remaining: int, rate: float) -> float | None:
    """Seconds until the remaining jobs are done at ``rate``; None when it cannot be told yet."""
    if remaining <= 0:
        return 0.0
    if rate <= 0:
        return None
    return remaining / rate
