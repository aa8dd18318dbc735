"""The arithmetic behind the benchmark figures (no timing is asserted anywhere)."""

import pytest

from bench import stats
from bench.polling import observations
from bench.probe import difference, statement_key


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5], 95, 5),
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4, 5], 0, 1),
        ([1, 2, 3, 4, 5], 100, 5),
        ([10, 1, 7], 50, 7),
        (list(range(1, 101)), 95, 95.05),
    ],
)
def test_percentile_interpolates_between_ranks(values, q, expected) -> None:
    assert stats.percentile(values, q) == pytest.approx(expected)


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1], 101)])
def test_percentile_refuses_nonsense(values, q) -> None:
    with pytest.raises(ValueError):
        stats.percentile(values, q)


@pytest.mark.parametrize(
    ("value", "baseline", "expected"),
    [(50, 100, 0.5), (None, 100, None), (50, None, None), (50, 0, None)],
)
def test_ratio(value, baseline, expected) -> None:
    assert stats.ratio(value, baseline) == expected


def test_rate_of_an_instant_is_zero() -> None:
    assert stats.rate(10, 0) == 0.0
    assert stats.rate(10, 2) == 5.0


def test_window_rate_leaves_start_and_tail_out() -> None:
    # a slow start (first job after 5 s) and a straggler; steady 1 job per 0.1 s between
    ends = [5.0] + [10 + 0.1 * n for n in range(99)] + [60.0]
    assert stats.window_rate(ends) == pytest.approx(10.0, rel=0.05)
    assert stats.window_rate([1.0]) == 0.0


@pytest.mark.parametrize(
    ("spans", "peak"),
    [
        ([], 0),
        ([(0, 10), (1, 2), (3, 4)], 2),
        ([(0, 1), (1, 2), (2, 3)], 1),  # touching intervals do not overlap
        ([(0, 0), (0, 0), (5, 6)], 1),  # zero-length ones count for nothing
        ([(0, 10)] * 4, 4),
    ],
)
def test_peak_overlap(spans, peak) -> None:
    assert stats.peak_overlap(spans) == peak
    assert stats.peak_overlap(iter(spans)) == peak  # a generator is read once


def test_median_of_keeps_the_whole_run() -> None:
    runs = [("a", 3.0), ("b", 1.0), ("c", 2.0), ("d", 9.0)]
    assert stats.median_of(runs, key=lambda run: run[1]) == ("c", 2.0)


def test_summary() -> None:
    assert stats.summary([]) == {"count": 0}
    assert stats.summary([1, 2, 3])["median"] == 2


def test_statement_keys_drop_parameters_and_list_lengths() -> None:
    one = statement_key("SELECT jobs.id FROM jobs\n WHERE jobs.status IN (%(s_1)s, %(s_2)s)")
    two = statement_key("SELECT jobs.id FROM jobs WHERE jobs.status IN (%(s_1)s)")
    assert one == "SELECT jobs.id FROM jobs WHERE jobs.status IN (?…)"
    assert two == "SELECT jobs.id FROM jobs WHERE jobs.status IN (?)"
    assert len(statement_key("UPDATE jobs SET " + "a=%(a)s, " * 100)) == 140


def test_probe_difference_keeps_what_changed() -> None:
    before = {"statements": {"SELECT 1": [5, 0.5]}, "events": {"commit": 2}}
    after = {
        "statements": {"SELECT 1": [5, 0.5], "SELECT 2": [3, 0.3]},
        "events": {"commit": 7, "checkout": 4},
    }
    assert difference(after, before) == {
        "statements": {"SELECT 2": [3, 0.3]},
        "events": {"commit": 5, "checkout": 4},
    }


def test_polling_observations_measure_lag_against_the_allowance() -> None:
    predictions = [
        {
            "created_at": 100.0,
            "completed_at": 130.0,
            "first_done_poll_at": 131.5,
            "polls": 5,
            "params": {"resolution": "1080p"},
        },
        {
            "created_at": 100.0,
            "completed_at": 160.0,
            "first_done_poll_at": None,
            "polls": 9,
            "params": {"resolution": "4K"},
        },  # never seen complete: left out
    ]
    [seen] = observations(predictions)
    assert seen["generation_s"] == 30.0 and seen["lag_s"] == 1.5
    assert seen["allowance_s"] == pytest.approx(5.0)
