"""The fewest polls the lag rule allows, from the contract's generation-time ranges.

The rule: a job done after ``g`` seconds must be seen by ``g + 2 s + 10% of g``. A blind poller
(the contract gives no progress or ETA) does best by polling as late as the rule lets it: the
first poll at ``1.1 lo + 2`` (the latest that still sees a job done at ``lo`` in time), then
each at ``1.1 p + 2`` after the previous one ``p`` (the latest that sees a job done just after
``p`` in time). A job done at ``g`` then takes as many polls as this schedule needs to reach
``g``; no schedule does with fewer. 15-60 s takes 9 (18.5, 22.4, 26.6 ... 55.0, 62.5 s).

The polling benchmark's target is that minimum at the same percentile as its figure, over the
same mix of resolutions, plus one poll of slack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from bench import stats

ALLOWANCE_S, ALLOWANCE_SHARE = 2.0, 0.1
SLACK_POLLS = 1
_GRID = 2000  # generation times per range: the percentile of a uniform draw, to < 0.1%


def latest_schedule(lo_s: float, hi_s: float) -> list[float]:
    """The laziest poll times meeting the rule for every generation time in [lo_s, hi_s]."""
    if not 0 < lo_s <= hi_s:
        raise ValueError(f"not a generation-time range: {lo_s}-{hi_s}")
    polls = [_latest_after(lo_s)]
    while polls[-1] < hi_s:
        polls.append(_latest_after(polls[-1]))
    return polls


def polls_needed(generation_s: float, schedule: list[float]) -> int:
    """Polls the schedule sends up to and including the first at or after ``generation_s``."""
    for count, at in enumerate(schedule, start=1):
        if at >= generation_s:
            return count
    raise ValueError(f"{generation_s} s is beyond the schedule's last poll")


def minimum_polls(ranges: Mapping[str, tuple[float, float]], mix: list[str], q: float) -> float:
    """The ``q``-th percentile of the polls the rule needs at the least, for uniform generation
    times in each resolution's range and resolutions drawn as in ``mix``."""
    needed: list[float] = []
    for resolution in mix:
        lo, hi = ranges[resolution]
        schedule = latest_schedule(lo, hi)
        step = (hi - lo) / (_GRID - 1)
        needed += [polls_needed(lo + index * step, schedule) for index in range(_GRID)]
    return stats.percentile(needed, q)


def poll_target(ranges: Mapping[str, tuple[float, float]], mix: list[str], q: float) -> int:
    """The benchmark's bound on the ``q``-th percentile of polls per job: the minimum + 1."""
    return math.ceil(minimum_polls(ranges, mix, q)) + SLACK_POLLS


def parse_range(spec: str) -> tuple[float, float]:
    """``"15-60"`` (the simulator's ``--latency`` syntax) as ``(15.0, 60.0)``."""
    lo, _, hi = spec.partition("-")
    return float(lo), float(hi or lo)


def _latest_after(done_s: float) -> float:
    return done_s * (1 + ALLOWANCE_SHARE) + ALLOWANCE_S
