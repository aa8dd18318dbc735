"""Where results go: ``bench/results/<timestamp>.json``, ``latest.json`` and the table in
``docs/benchmarks.md`` (between its two markers; the rest of that page is written by hand).

Only a full run of every benchmark replaces ``latest.json`` and the docs' table, so the
committed figures always come from one complete run at full size.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.figures import Figure, markdown_table, notes

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench:latest:start -->", "<!-- bench:latest:end -->"


def figures_of(results: dict[str, Any]) -> list[Figure]:
    """Every figure of a results document, in benchmark order."""
    return [
        Figure.from_dict(data)
        for benchmark in results["benchmarks"].values()
        for data in benchmark["figures"]
    ]


def render(results: dict[str, Any]) -> str:
    """The table, the figures' notes and the machine, as Markdown."""
    figures = figures_of(results)
    failed = [
        f"- {name} did not finish: {data['error']}"
        for name, data in results["benchmarks"].items()
        if data.get("error")
    ]
    lines = [
        markdown_table(figures),
        "",
        *(f"- {line}" for line in notes(figures)),
        *failed,
        "",
        machine_line(results),
    ]
    return "\n".join(lines)


def machine_line(results: dict[str, Any]) -> str:
    machine = results["machine"]
    load = ", ".join(str(value) for value in machine["load_average_at_start"])
    size = "quick sizes" if results["quick"] else "full sizes"
    if results.get("overrides"):
        size += ", with " + " ".join(f"{k}={v}" for k, v in results["overrides"].items())
    return (
        f"Measured {results['started_at'][:16].replace('T', ' ')} UTC ({size}, "
        f"{results['duration_s'] / 60:.1f} min) on {machine['cpus']} CPUs "
        f"({machine['cpu_model']}), {machine['memory_gib']} GiB RAM, Linux "
        f"{machine['kernel']}, Python {machine['python']}, PostgreSQL "
        f"{machine['postgres']}, Redis {machine['redis']}; load average at start {load}; "
        f"{results['workers']} worker processes x {results['concurrency']} threads."
    )


def save(
    results: dict[str, Any], *, complete: bool, directory: Path = RESULTS_DIR, docs: Path = DOCS
) -> Path:
    """Write the timestamped file; for a complete run also ``latest.json`` and the docs."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    body = json.dumps(results, indent=2, default=str) + "\n"
    path.write_text(body)
    if complete:
        (directory / "latest.json").write_text(body)
        update_docs(docs, render(results))
    return path


def update_docs(docs: Path, table: str) -> None:
    """Replace what stands between the markers of ``docs`` with ``table``."""
    text = docs.read_text()
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"{docs} lacks the {START} ... {END} markers")
    docs.write_text(f"{head}{START}\n{table}\n{END}{tail}")
