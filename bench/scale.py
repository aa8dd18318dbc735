"""6. Scale with load: benchmark 2's workload at 1x, 4x and 16x the job count.

Time per job is the makespan (enqueue to the last job's end) divided by the jobs: the fixed
start-up (a dispatch cycle, the first hops) is small next to the smallest run. It is not taken
from a window of the end times: the dispatcher sends a whole batch of submits at once and they
run before the first poll (one queue), so the ends only start once every job was submitted and
a window over them would leave the submissions out. The rounds run one after the other on the
same workers and the same (growing) tables. Flat means within 25% of the 1x figure.
"""

from __future__ import annotations

from bench import overhead
from bench.figures import Figure, Target
from bench.runner import Context, Result

FACTORS = (1, 4, 16)
FLAT = 1.25


def run(context: Context) -> Result:
    base = context.size(200, 50)
    with context.stack(
        "scale", simulator_args=overhead.ZERO_LATENCY, settings=overhead.FIRST_POLL_AT_ONCE
    ) as stack:
        stack.start_workers(context.workers, context.concurrency)
        overhead.warm_up(context)
        rounds = {
            factor: overhead.pipeline_round(base * factor, tag=f"scale-{factor}x")
            for factor in FACTORS
        }
    per_job_ms = {
        factor: 1000 / measured.jobs_per_s if measured.jobs_per_s else None
        for factor, measured in rounds.items()
    }
    one = per_job_ms[1]
    figures = [
        Figure(
            "6 scale",
            f"time per job at {factor}x ({base * factor:,} jobs)",
            per_job_ms[factor],
            "ms",
            one if factor > 1 else None,
            f"1x ({base:,} jobs)" if factor > 1 else "",
            Target("<=", FLAT) if factor > 1 else None,
            f"{rounds[factor].states()}; makespan {rounds[factor].elapsed_s:.1f} s, first "
            f"job done after {rounds[factor].first_end_s:.1f} s",
        )
        for factor in FACTORS
    ]
    return Result(
        figures, {f"{factor}x": measured.as_dict() for factor, measured in rounds.items()}
    )
