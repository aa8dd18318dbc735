"""The plots of ``docs/benchmarks.md``, drawn from a results document into ``docs/bench/``.

``make bench`` draws them after a complete run; ``python -m bench plot [FILE]`` draws them from
any results file (a plot whose benchmark is not in the file is left as it was). matplotlib is a
dev dependency, imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.results import ROOT

PLOTS_DIR = ROOT / "docs" / "bench"


def draw_all(results: dict[str, Any], directory: Path = PLOTS_DIR) -> list[Path]:
    """Every plot whose benchmark is in ``results``; the files written."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    benchmarks = results["benchmarks"]
    stamp = f"{results['started_at'][:16].replace('T', ' ')} UTC"
    directory.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name, draw in (
        ("overhead", _completions),
        ("overhead", _cost_per_job),
        ("polling", _lag),
        ("scale", _scale),
    ):
        data = benchmarks.get(name)
        if data and not data.get("error") and data.get("details"):
            path = draw(data["details"], directory, stamp)
            drawn += [path] if path else []
    return drawn


def _completions(details: dict[str, Any], directory: Path, stamp: str) -> Path | None:
    import matplotlib.pyplot as plt

    if "naive" not in details:  # results from before the naive chain
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for key, label in (("pipeline", "pipeline"), ("naive", "naive Celery chain")):
        series = details[key]["ends_per_second"]
        ax.plot(range(len(series)), series, label=f"{label} ({details[key]['jobs_per_s']} jobs/s)")
    ax.set(
        xlabel="seconds since enqueue",
        ylabel="jobs finished per second",
        title=f"Benchmark 2: completions over time, zero-latency provider ({stamp})",
    )
    ax.legend()
    return _save(fig, directory / "completions.png")


def _cost_per_job(details: dict[str, Any], directory: Path, stamp: str) -> Path | None:
    import matplotlib.pyplot as plt

    costs = details.get("cpu_ms_per_job")
    if not costs:
        return None
    runs = list(costs)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bottom = [0.0] * len(runs)
    for component in ("workers", "postgres", "stand-ins"):
        values = [costs[run][component] for run in runs]
        ax.bar(runs, values, bottom=bottom, label=component)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set(ylabel="CPU ms per job", title=f"Benchmark 2: CPU per job by component ({stamp})")
    ax.legend()
    return _save(fig, directory / "cost_per_job.png")


def _lag(details: dict[str, Any], directory: Path, stamp: str) -> Path | None:
    import matplotlib.pyplot as plt

    seen = details.get("observations")
    if not seen:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for resolution in sorted({item["resolution"] for item in seen}):
        mine = [item for item in seen if item["resolution"] == resolution]
        ax.scatter(
            [item["generation_s"] for item in mine],
            [item["lag_s"] for item in mine],
            s=8,
            label=resolution,
        )
    top = max(item["generation_s"] for item in seen)
    ax.plot([0, top], [2, 2 + 0.1 * top], "k--", label="allowance: 2 s + 10%")
    ax.set(
        xlabel="generation time (s)",
        ylabel="detection lag (s)",
        title=f"Benchmark 4: detection lag against its allowance ({stamp})",
    )
    ax.legend()
    return _save(fig, directory / "lag.png")


def _scale(details: dict[str, Any], directory: Path, stamp: str) -> Path | None:
    import matplotlib.pyplot as plt

    rounds = details  # "1x", "4x", "16x": each round's figures
    jobs = [data["jobs"] for data in rounds.values()]
    per_job_ms = [data["elapsed_s"] / data["jobs"] * 1000 for data in rounds.values()]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(jobs, per_job_ms, "o-")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set(
        xlabel="jobs in the round",
        ylabel="makespan per job (ms)",
        title=f"Benchmark 6: time per job as the batch grows ({stamp})",
    )
    return _save(fig, directory / "scale.png")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
