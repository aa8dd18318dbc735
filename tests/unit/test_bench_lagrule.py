"""The fewest polls the lag rule allows (the polling benchmark's target)."""

import pytest

from bench import lagrule

CONTRACT = {"1080p": (15.0, 60.0), "2K": (20.0, 80.0), "4K": (30.0, 120.0)}


def test_the_hand_computation_of_the_docs_15_to_60_s_takes_9_polls() -> None:
    schedule = lagrule.latest_schedule(15, 60)
    assert len(schedule) == 9
    assert schedule[0] == pytest.approx(18.5)
    assert schedule[-2] < 60 <= schedule[-1]


@pytest.mark.parametrize(("lo", "hi"), [(15, 60), (20, 80), (30, 120), (1, 1)])
def test_every_generation_time_is_seen_within_its_allowance(lo: float, hi: float) -> None:
    schedule = lagrule.latest_schedule(lo, hi)
    for tenth in range(int(lo * 10), int(hi * 10) + 1):
        done = tenth / 10
        seen = schedule[lagrule.polls_needed(done, schedule) - 1]
        assert seen - done <= 2 + 0.1 * done + 1e-9


def test_a_poll_any_later_misses_the_allowance_of_a_job_done_just_after_the_previous() -> None:
    schedule = lagrule.latest_schedule(15, 60)
    for before, after in zip([15.0, *schedule], schedule, strict=False):
        assert after == pytest.approx(before + 2 + 0.1 * before)


@pytest.mark.parametrize(
    ("mix", "q", "expected"),
    [
        (["1080p"], 100, 9),
        (["4K"], 100, 11),
        (["1080p"], 0, 1),
        (["1080p"] * 6 + ["2K"] * 3 + ["4K"], 95, 10),
    ],
)
def test_minimum_polls_at_a_percentile_of_the_mix(mix: list[str], q: float, expected: int) -> None:
    assert lagrule.minimum_polls(CONTRACT, mix, q) == expected


def test_the_target_is_the_minimum_plus_one() -> None:
    assert lagrule.poll_target(CONTRACT, ["1080p"], 100) == 10


@pytest.mark.parametrize(("spec", "expected"), [("15-60", (15.0, 60.0)), ("0", (0.0, 0.0))])
def test_parse_range(spec: str, expected: tuple[float, float]) -> None:
    assert lagrule.parse_range(spec) == expected


@pytest.mark.parametrize(("lo", "hi"), [(0, 10), (20, 10)])
def test_not_a_range(lo: float, hi: float) -> None:
    with pytest.raises(ValueError):
        lagrule.latest_schedule(lo, hi)
