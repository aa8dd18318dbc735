"""An output download is bounded as a whole: a deadline, and a minimum average rate after a
grace period (the per-read timeout alone lets a byte every few seconds go on for ever)."""

from __future__ import annotations

import pytest

from worker.blobs.copier import RATE_GRACE_S, DownloadLimits, _paced
from worker.core.errors import OutputUnavailable

LIMITS = DownloadLimits(max_bytes=10**9, max_pixels=10**8, deadline_s=60, min_rate_bps=1000)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drip(clock: Clock, *, size: int, every_s: float, count: int):  # type: ignore[no-untyped-def]
    for _ in range(count):
        clock.now += every_s
        yield b"x" * size


def test_a_slow_start_is_forgiven_until_the_grace_ends() -> None:
    clock = Clock()
    chunks = drip(clock, size=10, every_s=1, count=int(RATE_GRACE_S))
    assert sum(map(len, _paced(chunks, LIMITS, clock))) == 10 * int(RATE_GRACE_S)


def test_below_the_minimum_rate_the_attempt_fails() -> None:
    clock = Clock()
    chunks = drip(clock, size=10, every_s=1, count=100)
    with pytest.raises(OutputUnavailable, match="slower than 1000 bytes/s"):
        list(_paced(chunks, LIMITS, clock))
    assert clock.now <= RATE_GRACE_S + 1


def test_a_steady_download_that_goes_on_too_long_hits_the_deadline() -> None:
    clock = Clock()
    chunks = drip(clock, size=5000, every_s=1, count=1000)  # 5 kB/s: fast enough, for ever
    with pytest.raises(OutputUnavailable, match="took longer than 60 s"):
        list(_paced(chunks, LIMITS, clock))
    assert clock.now <= 61
