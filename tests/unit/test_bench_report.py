"""The benchmark table, its targets, the results files and the profile summary."""

from pathlib import Path

import pytest

from bench import results
from bench.figures import Figure, Target, markdown_table
from bench.profiler import function_of, summarize


def test_a_ratio_target_compares_with_the_same_run_baseline() -> None:
    figure = Figure("1 enqueue", "rate", 45_000, "rows/s", 80_000, "raw COPY", Target(">=", 0.5))
    assert figure.ratio == pytest.approx(0.5625)
    assert figure.holds is True
    assert Figure("x", "rate", 30_000, "rows/s", 80_000, "", Target(">=", 0.5)).holds is False


def test_a_value_target_ignores_the_baseline() -> None:
    target = Target("<=", 6, on="value")
    assert Figure("4 polling", "polls", 5, "polls", target=target).holds is True
    assert Figure("4 polling", "polls", 7, "polls", target=target).holds is False
    assert Figure("4 polling", "polls", None, "polls", target=target).holds is None
    assert target.describe("polls") == "≤ 6 polls"
    assert Target(">=", 0.8).describe("MiB/s") == "≥ 0.8x"


def test_figures_survive_the_results_file() -> None:
    figure = Figure("5 transfer", "rate", 90.5, "MiB/s", 100.0, "plain", Target(">=", 0.8), "note")
    assert Figure.from_dict(figure.as_dict()) == figure


def test_the_table_has_every_column() -> None:
    table = markdown_table(
        [
            Figure("2 overhead", "jobs/s", 41.234, "jobs/s", 310, "bare Celery", Target(">=", 0.5)),
            Figure("2 overhead", "statements per job", 31.5),
        ]
    )
    lines = table.splitlines()
    assert lines[0].startswith("| benchmark") and set(lines[1]) <= {"|", "-"}
    assert "| 41.2 jobs/s" in lines[2] and "310 jobs/s (bare Celery)" in lines[2]
    assert "0.133x" in lines[2] and "**no**" in lines[2]
    assert lines[3].count("|") == lines[2].count("|")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (83_412.2, "83,412"),
        (123.4, "123"),
        (12.34, "12.3"),
        (1.234, "1.23"),
        (0.1234, "0.123"),
        (6.0, "6"),
        (0.0, "0"),
    ],
)
def test_numbers_keep_three_significant_digits(value, text) -> None:
    assert markdown_table([Figure("b", "f", value)]).splitlines()[2].split("|")[3].strip() == text


def test_the_docs_table_is_replaced_between_its_markers(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\nintro\n\n{results.START}\nold\n{results.END}\n\nnotes\n")
    results.update_docs(docs, "| new |")
    assert docs.read_text() == (
        f"# Benchmarks\n\nintro\n\n{results.START}\n| new |\n{results.END}\n\nnotes\n"
    )
    (tmp_path / "bare.md").write_text("no markers")
    with pytest.raises(ValueError):
        results.update_docs(tmp_path / "bare.md", "x")


def test_only_a_complete_run_replaces_latest_and_the_docs(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"{results.START}\n{results.END}\n")
    document = {
        "quick": True,
        "started_at": "2026-11-25T10:00:00+00:00",
        "duration_s": 60,
        "workers": 2,
        "concurrency": 16,
        "machine": {
            "cpus": 2,
            "cpu_model": "cpu",
            "memory_gib": 24,
            "kernel": "6",
            "python": "3.11",
            "postgres": "15",
            "redis": "7",
            "load_average_at_start": [0.5, 0.4, 0.3],
        },
        "benchmarks": {
            "enqueue": {"figures": [Figure("1 enqueue", "rate", 1.0).as_dict()], "error": None}
        },
    }
    results.save(document, complete=False, directory=tmp_path, docs=docs)
    assert not (tmp_path / "latest.json").exists() and "rate" not in docs.read_text()
    results.save(document, complete=True, directory=tmp_path, docs=docs)
    assert (tmp_path / "latest.json").exists() and "| 1 enqueue" in docs.read_text()
    assert "2 CPUs" in docs.read_text()


def test_profile_summary_counts_own_and_inclusive_samples() -> None:
    lines = [
        "main (app.py:1);work (/venv/lib/python3.11/site-packages/lib/x.py:20) 3",
        "main (app.py:1);idle (app.py:9) 1",
        "garbage",
    ]
    summary = summarize(lines, top=5)
    assert summary["samples"] == 4
    assert summary["own_percent"][0] == ("work (lib/x.py)", 75.0)
    assert ("main (app.py)", 100.0) in summary["inclusive_percent"]
    assert function_of("<module> (x.py)") == "<module> (x.py)"
