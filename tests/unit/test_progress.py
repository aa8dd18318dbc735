"""Batch throughput and ETA."""

import pytest

from worker.core.progress import eta_s, rate_per_s


@pytest.mark.parametrize(
    ("done", "elapsed", "recent", "rate"),
    [
        (0, 0, 0, 0.0),
        (0, 30, 0, 0.0),
        (30, 30, 30, 1.0),  # younger than the window: over the elapsed time
        (600, 600, 120, 2.0),  # older: over the last 60 s
        (100, 1000, 0, 0.1),  # nothing recently: the overall average
    ],
)
def test_rate(done: int, elapsed: float, recent: int, rate: float) -> None:
    assert rate_per_s(done=done, elapsed_s=elapsed, recent_done=recent) == pytest.approx(rate)


@pytest.mark.parametrize(
    ("remaining", "rate", "eta"), [(0, 0.0, 0.0), (100, 0.0, None), (100, 4.0, 25.0)]
)
def test_eta(remaining: int, rate: float, eta: float | None) -> None:
    assert eta_s(remaining=remaining, rate=rate) == eta
