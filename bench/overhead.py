"""2. Pipeline overhead: jobs end to end against a zero-latency provider vs. a naive chain.

The simulator answers at once (no generation time, no queueing) with small pictures served
from its cache, and the first poll is sent at once, so what is measured is the system's own
cost per job: the Celery hops, the guarded transitions in Postgres, the provider calls and the
S3 upload. The baseline is the naive chain of :mod:`bench.naive_chain`: the same three
Celery steps with the same I/O and one ORM load-and-commit per step, none of the guarantees;
the floor is a bare chain of no-op Celery tasks with as many hops per job as the
pipeline ran, on the same broker, pool, worker count and concurrency (``bench.celery_baseline``).
Database statements come from a probe in the worker and beat processes (``bench.probe``);
HTTP requests from the simulator's counts and moto's request log.
"""

from __future__ import annotations

import time
import uuid
from contextlib import nullcontext
from typing import Any

from bench import probe, workload
from bench.figures import Figure, Target
from bench.runner import Context, Result
from bench.stack import Stack
from bench.workload import Round

ZERO_LATENCY = ["--latency", "*=0", "--queue-s", "0"]
FIRST_POLL_AT_ONCE = {"IMAGEGEN_POLL_INITIAL_DELAY_S": "0"}
SMALL_PICTURE = {"resolution": "1080p", "aspect_ratio": "1:1"}
PIPELINE_TASKS = ("imagegen.submit", "imagegen.poll", "imagegen.transfer")
_TIMEOUT_S = 600.0
_TOP_STATEMENTS = 12


def run(context: Context) -> Result:
    count = context.size(2000, 300)
    with context.stack(
        "overhead", simulator_args=ZERO_LATENCY, settings=FIRST_POLL_AT_ONCE
    ) as stack:
        pids = stack.start_workers(context.workers, context.concurrency, probe=True)
        warm_up(context)
        before = observe(stack)
        meter = stack.cpu_meter()
        profiler = context.profiler(stack, pids)
        meter.start()
        with profiler or nullcontext():
            pipeline = pipeline_round(count, tag="overhead")
        cpu = meter.stop()
        time.sleep(1.5)  # the probes write their counts twice a second
        per_job = costs(observe(stack), before, count)
        stack.stop_all("worker")
        hops = max(1, round(sum(per_job["tasks"].get(name, 0) for name in PIPELINE_TASKS)))
        stack.start_baseline_workers(context.workers, context.concurrency)
        baseline, baseline_cpu = bare_celery(stack, context, count, hops)
        naive, naive_cpu = naive_pipeline(stack, context, count)
        stack.stop_all("baseline")
    details = {
        "pipeline": pipeline.as_dict(),
        "baseline": baseline.as_dict(),
        "naive": naive.as_dict(),
        "hops_per_job": hops,
        "per_job": per_job,
        "cpu_seconds": {"pipeline": cpu, "baseline": baseline_cpu, "naive": naive_cpu},
        "cpu_ms_per_job": {
            "pipeline": cpu_per_job(cpu, "worker", count),
            "naive": cpu_per_job(naive_cpu, "baseline", count),
            "bare hops": cpu_per_job(baseline_cpu, "baseline", count),
        },
        "profile": profiler.summary() if profiler else None,
    }
    return Result(figures(count, pipeline, baseline, naive, hops, per_job, details), details)


def cpu_per_job(cpu: dict[str, float], workers: str, count: int) -> dict[str, float]:
    """Milliseconds of CPU per job: the workers (``workers``: the label of their group),
    Postgres, and the stand-ins (simulator and moto)."""
    stand_ins = cpu.get("simulator", 0.0) + cpu.get("moto (S3)", 0.0)
    return {
        "workers": round(cpu.get(workers, 0.0) / count * 1000, 2),
        "postgres": round(cpu.get("postgres", 0.0) / count * 1000, 2),
        "stand-ins": round(stand_ins / count * 1000, 2),
    }


def figures(
    count: int,
    pipeline: Round,
    baseline: Round,
    naive: Round,
    hops: int,
    per_job: dict[str, Any],
    details: dict[str, Any],
) -> list[Figure]:
    http = per_job["http"]
    described = ", ".join(f"{kind} {value:.2f}" for kind, value in http.items() if value)
    cpu = details["cpu_ms_per_job"]
    return [
        Figure(
            "2 overhead",
            f"{count:,} jobs end to end, zero-latency provider",
            pipeline.jobs_per_s,
            "jobs/s",
            naive.jobs_per_s,
            "naive Celery chain, same I/O, no guarantees",
            Target(">=", 1.0),
            f"{pipeline.states()}; first job done after {pipeline.first_end_s:.1f} s; "
            f"CPU ms per job: {_cpu(cpu['pipeline'])}; naive chain: {naive.states()}, "
            f"{_cpu(cpu['naive'])}",
        ),
        Figure(
            "2 overhead",
            "the same, against bare Celery (the floor)",
            pipeline.jobs_per_s,
            "jobs/s",
            baseline.jobs_per_s,
            f"bare Celery, {hops} no-op hops/job",
            Target(">=", 0.5),
            f"bare hops: {_cpu(cpu['bare hops'])}",
        ),
        Figure(
            "2 overhead",
            "database statements per job",
            per_job["statements"],
            "",
            note=f"{per_job['transactions']:.1f} transactions and "
            f"{per_job['checkouts']:.1f} pool checkouts (pre-ping) per job; "
            f"{per_job['connections_opened']} connections opened during the run",
        ),
        Figure("2 overhead", "HTTP requests per job", sum(http.values()), "", note=described),
    ]


def _cpu(per_job: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f}" for name, value in per_job.items())


def warm_up(context: Context) -> None:
    """A first round that opens every pool and client in the workers; not measured."""
    workload.run(
        workload.requests(
            context.workers * context.concurrency * 2, prompts=8, tag="warm-up", **SMALL_PICTURE
        ),
        name="warm-up",
        timeout_s=_TIMEOUT_S,
    )


def pipeline_round(count: int, *, tag: str) -> Round:
    return workload.run(
        workload.requests(count, prompts=8, tag=tag, **SMALL_PICTURE),
        name=tag,
        timeout_s=_TIMEOUT_S,
    )


def bare_celery(
    stack: Stack, context: Context, count: int, hops: int
) -> tuple[Round, dict[str, float]]:
    """The same number of jobs as chains of ``hops`` no-op tasks (after a warm-up round), on
    the baseline workers."""
    chain_round(context.workers * context.concurrency * 2, hops)
    meter = stack.cpu_meter()
    meter.start()
    measured = chain_round(count, hops)
    cpu = meter.stop()
    return measured, cpu


def naive_pipeline(stack: Stack, context: Context, count: int) -> tuple[Round, dict[str, float]]:
    """The same jobs through :mod:`bench.naive_chain` on the baseline workers (after a
    warm-up round)."""
    from bench import naive_chain

    naive_chain.create_table(stack.pg_url)
    warm = workload.requests(
        context.workers * context.concurrency * 2, prompts=8, tag="warm-up", **SMALL_PICTURE
    )
    naive_chain.run_round(stack.pg_url, warm, run_id="warm-up", timeout_s=_TIMEOUT_S)
    items = workload.requests(count, prompts=8, tag="overhead", **SMALL_PICTURE)
    meter = stack.cpu_meter()
    meter.start()
    measured = naive_chain.run_round(stack.pg_url, items, run_id="naive", timeout_s=_TIMEOUT_S)
    cpu = meter.stop()
    return measured, cpu


def chain_round(count: int, hops: int) -> Round:
    from bench.celery_baseline import ends, hop

    run_id = uuid.uuid4().hex
    outcome = Round(jobs=count, started=time.time())
    for _ in range(count):
        hop.apply_async((run_id, hops))
    deadline = time.monotonic() + _TIMEOUT_S
    while len(outcome.ends) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        outcome.ends = ends(run_id)
    outcome.timed_out = len(outcome.ends) < count
    outcome.by_status["succeeded"] = len(outcome.ends)
    return outcome


def observe(stack: Stack) -> dict[str, Any]:
    """Every counter this benchmark reads, at one moment."""
    stats = stack.simulator("/_sim/stats")
    return {
        "probe": probe.read_all(stack.probe_dir),
        "s3": stack.s3_requests(),
        "provider": {
            kind: sum(by_status.values()) for kind, by_status in stats["requests_by_kind"].items()
        },
    }


def costs(after: dict[str, Any], before: dict[str, Any], count: int) -> dict[str, Any]:
    """Per-job statements, transactions, tasks and HTTP requests between two observations."""
    db = probe.difference(after["probe"], before["probe"])
    events = db["events"]
    http = {
        f"provider {kind}": (value - before["provider"].get(kind, 0)) / count
        for kind, value in after["provider"].items()
    }
    http.update(
        {
            f"S3 {method}": (value - before["s3"].get(method, 0)) / count
            for method, value in after["s3"].items()
        }
    )
    top = sorted(db["statements"].items(), key=lambda item: -item[1][0])[:_TOP_STATEMENTS]
    return {
        "statements": sum(count_ for count_, _ in db["statements"].values()) / count,
        "transactions": (events.get("commit", 0) + events.get("rollback", 0)) / count,
        "checkouts": events.get("checkout", 0) / count,
        "connections_opened": events.get("connect", 0),
        "tasks": {
            name[5:]: value / count for name, value in events.items() if name.startswith("task:")
        },
        "http": http,
        "top_statements": [
            {
                "statement": key,
                "per_job": round(n / count, 3),
                "mean_ms": round(seconds / n * 1000, 3),
            }
            for key, (n, seconds) in top
        ],
    }
