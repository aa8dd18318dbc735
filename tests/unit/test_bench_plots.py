"""The plots are drawn from whatever benchmarks a results document holds."""

from pathlib import Path

from bench import plots


def document(**benchmarks: dict) -> dict:
    return {
        "started_at": "2026-12-02T10:00:00+00:00",
        "benchmarks": {name: {"details": details} for name, details in benchmarks.items()},
    }


OVERHEAD = {
    "pipeline": {"ends_per_second": [1, 5, 9, 3], "jobs_per_s": 6.0},
    "naive": {"ends_per_second": [4, 12, 2], "jobs_per_s": 9.0},
    "cpu_ms_per_job": {
        run: {"workers": 10.0, "postgres": 2.0, "stand-ins": 3.0}
        for run in ("pipeline", "naive", "bare hops")
    },
}
POLLING = {
    "observations": [
        {"resolution": "1080p", "generation_s": 20.0, "lag_s": 1.5, "polls": 3},
        {"resolution": "2K", "generation_s": 50.0, "lag_s": 4.0, "polls": 8},
    ]
}
SCALE = {f"{n}x": {"jobs": 200 * n, "elapsed_s": 8.0 * n} for n in (1, 4, 16)}


def test_every_plot_is_drawn_from_a_full_document(tmp_path: Path) -> None:
    drawn = plots.draw_all(document(overhead=OVERHEAD, polling=POLLING, scale=SCALE), tmp_path)
    names = sorted(path.name for path in drawn)
    assert names == ["completions.png", "cost_per_job.png", "lag.png", "scale.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in drawn)


def test_benchmarks_not_in_the_document_or_from_before_are_left_alone(tmp_path: Path) -> None:
    old_overhead = {"pipeline": OVERHEAD["pipeline"]}  # no naive chain, no CPU per job
    assert plots.draw_all(document(overhead=old_overhead, polling={}), tmp_path) == []
