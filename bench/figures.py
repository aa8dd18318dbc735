"""What a benchmark reports: figures with their same-run baseline and target, and the table.

A figure is a value with a unit; most have a baseline measured in the same run, and the target
is then on the ratio (``at least 0.5x the raw COPY rate``). Some targets are on the value
itself (``at most 6 polls per job``). Figures without a target are reported for context.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from bench.stats import ratio

Op = Literal[">=", "<="]


@dataclass(frozen=True)
class Target:
    """A bound on a figure's ratio to its baseline, or on its value."""

    op: Op
    limit: float
    on: Literal["ratio", "value"] = "ratio"

    def holds(self, figure: Figure) -> bool | None:
        """Whether ``figure`` meets the target; None when it could not be measured."""
        measured = figure.ratio if self.on == "ratio" else figure.value
        if measured is None:
            return None
        return measured >= self.limit if self.op == ">=" else measured <= self.limit

    def describe(self, unit: str) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        if self.on == "ratio":
            return f"{sign} {_number(self.limit)}x"
        return f"{sign} {_number(self.limit)} {unit}".rstrip()


@dataclass(frozen=True)
class Figure:
    """One line of the table."""

    benchmark: str
    name: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.baseline)

    @property
    def holds(self) -> bool | None:
        return self.target.holds(self) if self.target else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ratio=self.ratio, holds=self.holds)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        target = data.get("target")
        return cls(
            benchmark=data["benchmark"],
            name=data["name"],
            value=data["value"],
            unit=data.get("unit", ""),
            baseline=data.get("baseline"),
            baseline_name=data.get("baseline_name", ""),
            target=Target(**target) if target else None,
            note=data.get("note", ""),
        )


HEADER = ("benchmark", "figure", "value", "baseline (same run)", "ratio", "target", "holds")


def rows(figures: list[Figure]) -> list[tuple[str, ...]]:
    """The table's cells, one tuple per figure."""
    return [
        (
            f.benchmark,
            f.name,
            _quantity(f.value, f.unit),
            _baseline(f),
            "" if f.ratio is None else f"{_number(f.ratio)}x",
            f.target.describe(f.unit) if f.target else "",
            _verdict(f),
        )
        for f in figures
    ]


def markdown_table(figures: list[Figure]) -> str:
    """The figures as a Markdown table (readable as plain text too)."""
    cells = [HEADER, *rows(figures)]
    widths = [max(len(row[column]) for row in cells) for column in range(len(HEADER))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def notes(figures: list[Figure]) -> list[str]:
    """The figures' notes, as ``benchmark / figure: note`` lines."""
    return [f"{f.benchmark} / {f.name}: {f.note}" for f in figures if f.note]


def _baseline(figure: Figure) -> str:
    if figure.baseline is None:
        return figure.baseline_name
    return f"{_quantity(figure.baseline, figure.unit)} ({figure.baseline_name})".strip()


def _verdict(figure: Figure) -> str:
    holds = figure.holds
    if figure.target is None:
        return ""
    return {True: "yes", False: "**no**", None: "n/a"}[holds]


def _quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    return f"{_number(value)} {unit}".rstrip()


def _number(value: float) -> str:
    """Three significant digits, thousands separated (``83,400``, ``12.3``, ``0.456``)."""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100 or value == int(value):
        return f"{value:.0f}" if magnitude >= 100 else f"{int(value)}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
