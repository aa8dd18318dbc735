"""3. Concurrency while waiting: many jobs with a 10 s generation time and no provider limit.

If no worker slot waits on the provider, every job is in flight at once and the makespan is
about one generation time plus the time the system needs to push every job through (what the
zero-latency rate of benchmark 2 says): target at most 1.3x (10 s + jobs / that rate). The
naive alternative, a task that submits and then sleeps between polls in its worker slot
(``bench.naive``), is measured on two waves of the same slots and extrapolated to the same
number of jobs. The poll settings are the defaults.
"""

from __future__ import annotations

import math
import time
import uuid

from bench import overhead, stats, workload
from bench.figures import Figure, Target
from bench.runner import Context, Result
from bench.stack import Stack
from bench.workload import Round

GENERATION_S = 10.0
SLOW_PROVIDER = ["--latency", f"*={GENERATION_S:g}", "--queue-s", "0"]
NAIVE_POLL_EVERY_S = 1.0
_TIMEOUT_S = 600.0


def run(context: Context) -> Result:
    count = context.size(1000, 200)
    slots = context.workers * context.concurrency
    with context.stack("waiting", simulator_args=SLOW_PROVIDER) as stack:
        zero_rate, source = zero_latency_rate(context, stack, count)
        stack.start_workers(context.workers, context.concurrency)
        meter = stack.cpu_meter()
        meter.start()
        measured = workload.run(
            workload.requests(count, prompts=8, tag="waiting", **overhead.SMALL_PICTURE),
            name="waiting",
            timeout_s=_TIMEOUT_S,
        )
        cpu = meter.stop()
        in_flight = peak_in_flight(stack, "waiting")
        stack.stop_all("worker")
        naive = naive_round(stack, context, 2 * slots)
    ideal = GENERATION_S + count / zero_rate
    waves = math.ceil(naive.jobs / slots)
    naive_estimate = math.ceil(count / slots) * naive.elapsed_s / waves
    figures = [
        Figure(
            "3 waiting",
            f"makespan of {count:,} jobs, {GENERATION_S:g} s generation",
            measured.elapsed_s,
            "s",
            ideal,
            f"{GENERATION_S:g} s + jobs / zero-latency rate",
            Target("<=", 1.3),
            f"peak {in_flight} predictions in flight on {slots} worker slots; zero-latency "
            f"rate {zero_rate:.1f} jobs/s ({source}); {measured.states()}",
        ),
        Figure(
            "3 waiting",
            "naive: a slot sleeps between polls (extrapolated)",
            naive_estimate,
            "s",
            ideal,
            f"{GENERATION_S:g} s + jobs / zero-latency rate",
            note=f"measured {naive.jobs} jobs in {naive.elapsed_s:.1f} s on {slots} slots "
            f"({waves} waves), polling every {NAIVE_POLL_EVERY_S:g} s",
        ),
    ]
    details = {
        "pipeline": measured.as_dict(),
        "naive": naive.as_dict(),
        "zero_latency_jobs_per_s": zero_rate,
        "zero_latency_source": source,
        "peak_in_flight": in_flight,
        "slots": slots,
        "cpu_seconds": cpu,
    }
    return Result(figures, details)


def zero_latency_rate(context: Context, stack: Stack, count: int) -> tuple[float, str]:
    """Benchmark 2's rate from this run, or measured here with the same settings."""
    earlier = context.results.get("overhead")
    if earlier is not None and not earlier.error:
        return float(earlier.details["pipeline"]["jobs_per_s"]), "benchmark 2 of this run"
    stack.configure_simulator(latency=["*=0"])
    stack.start_workers(context.workers, context.concurrency, settings=overhead.FIRST_POLL_AT_ONCE)
    overhead.warm_up(context)
    measured = overhead.pipeline_round(count, tag="zero-latency")
    stack.stop_all("worker")
    stack.stop("beat")
    stack.configure_simulator(latency=[f"*={GENERATION_S:g}"])
    return measured.jobs_per_s, f"measured here on {count:,} jobs"


def peak_in_flight(stack: Stack, tag: str) -> int:
    """The most predictions of this round (prompts tagged ``tag``) the simulator had created
    and not yet finished at one moment."""
    predictions = stack.simulator("/_sim/predictions")["predictions"]
    return stats.peak_overlap(
        (item["created_at"], item["completed_at"])
        for item in predictions
        if item["completed_at"] is not None and f" {tag} " in item["prompt"]
    )


def naive_round(stack: Stack, context: Context, count: int) -> Round:
    """``count`` jobs through ``bench.naive`` tasks on as many slots as the real workers had."""
    from bench.celery_baseline import ends, naive

    stack.start_baseline_workers(context.workers, context.concurrency)
    run_id = uuid.uuid4().hex
    outcome = Round(jobs=count, started=time.time())
    for request in workload.requests(count, prompts=8, tag="naive", **overhead.SMALL_PICTURE):
        naive.apply_async((run_id, request, NAIVE_POLL_EVERY_S))
    deadline = time.monotonic() + _TIMEOUT_S
    while len(outcome.ends) < count and time.monotonic() < deadline:
        time.sleep(0.5)
        outcome.ends = ends(run_id)
    outcome.timed_out = len(outcome.ends) < count
    stack.stop_all("baseline")
    return outcome
