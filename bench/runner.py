"""Runs the benchmarks in order, each against its own scratch services, and keeps what they
found for the next ones (the concurrency benchmark reuses the pipeline's zero-latency rate).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.figures import Figure
from bench.profiler import Profiler
from bench.stack import Stack

log = logging.getLogger("imagegen.bench")


@dataclass
class Result:
    """What one benchmark measured: its table lines and the raw details behind them."""

    figures: list[Figure]
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "figures": [figure.as_dict() for figure in self.figures],
            "details": self.details,
            "seconds": round(self.seconds, 1),
            "error": self.error,
        }


@dataclass
class Context:
    """Options of the run, where to put scratch files, and the results so far."""

    workdir: Path
    redis_url: str
    quick: bool = False
    workers: int = 2
    concurrency: int = 16
    #: Record py-spy profiles of the workers during measured windows (if py-spy is there).
    profile: bool = False
    #: Settings on top of every benchmark's own (``--set IMAGEGEN_X=1``: what-if runs).
    overrides: dict[str, str] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def profiler(self, stack: Stack, pids: list[int]) -> Profiler | None:
        """A profiler of ``pids`` when ``--profile`` was asked for, else None."""
        if not self.profile:
            return None
        return Profiler(stack.workdir, {f"worker-{index}": pid for index, pid in enumerate(pids)})

    def stack(
        self,
        name: str,
        *,
        simulator_args: list[str] | None = None,
        settings: dict[str, str] | None = None,
        services: bool = True,
    ) -> Stack:
        """Fresh services for the benchmark ``name`` (see :class:`Stack`)."""
        return Stack(
            self.workdir / name,
            redis_url=self.redis_url,
            simulator_args=simulator_args or [],
            settings={**(settings or {}), **self.overrides},
            services=services,
        )


Benchmark = Callable[[Context], Result]


def registry() -> dict[str, Benchmark]:
    """The benchmarks in the order they run (later ones may use earlier results)."""
    from bench import ceiling, enqueue, overhead, polling, producers, scale, transfer, waiting

    return {
        "enqueue": enqueue.run,
        "overhead": overhead.run,
        "waiting": waiting.run,
        "polling": polling.run,
        "transfer": transfer.run,
        "scale": scale.run,
        "producers": producers.run,
        "ceiling": ceiling.run,  # after overhead: uses its per-job figures
    }


def run(
    names: list[str], context: Context, progress: Callable[[str], None] = print
) -> dict[str, Result]:
    """Run the named benchmarks; a failing one is reported and the others still run."""
    benchmarks = registry()
    for name in names:
        progress(f"--- {name}")
        started = time.monotonic()
        try:
            result = benchmarks[name](context)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            log.exception("benchmark_failed", extra={"benchmark": name})
            result = Result([], error="".join(traceback.format_exception_only(exc)).strip())
        result.seconds = time.monotonic() - started
        context.results[name] = result
        progress(
            f"    {name} took {result.seconds:.0f} s"
            + (f" and FAILED: {result.error}" if result.error else "")
        )
    return context.results
