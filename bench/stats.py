"""Numbers from raw measurements: percentiles, rates over a window, overlap, the repeat policy.

Pure functions, so the arithmetic behind every figure is unit-tested (tests never assert times).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from statistics import median
from typing import TypeVar

T = TypeVar("T")


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between ranks (numpy's default).

    Raises ``ValueError`` on an empty sequence."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0-100")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or the baseline is zero."""
    if value is None or not baseline:
        return None
    return value / baseline


def rate(count: int, seconds: float) -> float:
    """Events per second; 0 for an empty or instantaneous span."""
    return count / seconds if seconds > 0 else 0.0


def window_rate(times: Sequence[float], *, low: float = 0.1, high: float = 0.9) -> float:
    """Completions per second between the ``low`` and ``high`` quantiles of their times.

    The steady-state rate: the start-up of a run (workers filling their slots) and its tail
    (the last few jobs) are left out, so runs of different sizes compare."""
    ordered = sorted(times)
    if len(ordered) < 2:
        return 0.0
    first = round(low * (len(ordered) - 1))
    last = round(high * (len(ordered) - 1))
    if last <= first:
        first, last = 0, len(ordered) - 1
    return rate(last - first, ordered[last] - ordered[first])


def peak_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of ``(start, end)`` intervals open at the same moment (an interval
    that ends exactly when another starts does not overlap it)."""
    spans = list(intervals)
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in edges:  # at equal times the end (-1) sorts before the start (+1)
        current += step
        peak = max(peak, current)
    return peak


def median_of(runs: Sequence[T], key: Callable[[T], float]) -> T:
    """The run whose ``key`` is the median one (the lower middle for an even count), so a
    figure and the details reported beside it come from the same repeat."""
    if not runs:
        raise ValueError("median of no runs")
    ordered = sorted(runs, key=key)
    return ordered[(len(ordered) - 1) // 2]


def summary(values: Sequence[float]) -> dict[str, float]:
    """Count, median, p95 and max of ``values`` (empty: only the count)."""
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "median": median(values),
        "p95": percentile(values, 95),
        "max": max(values),
    }
