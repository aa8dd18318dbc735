"""8. The fleet ceiling: how many jobs per second one Postgres carries, and what a night costs.

Postgres's capacity on this machine is measured with pgbench in a scratch database: the
built-in ``simple-update`` script (per transaction: an UPDATE, a SELECT and an INSERT, then a
commit that waits for the WAL flush, much like a pipeline step's guarded update, its event and
a read) at a few client counts, and ``select-only`` (one read, no write) at the best of them.
Without pgbench, the same statements run in a loop from threads (``bench.pgloop``).

The per-job figures come from benchmark 2 of the same run (``overhead``: statements and
transactions per job from the probe, worker and Postgres CPU per job from the CPU meter); when
it did not run, from ``bench/results/latest.json``, which the table says. The model:

- a job costs Postgres ``T`` write transactions of the simple-update kind and the statements
  beyond their three each at the select-only rate: ``1 / (T / tps_update + max(S - 3T, 0) /
  tps_select)`` jobs per second (pgbench shares the 2 cores with Postgres, as the workers do);
- a cross-check from Postgres's own CPU per job: ``cores / CPU per job``;
- worker processes: each is one interpreter (the GIL), at most one core: ``rate x worker CPU
  per job``; connections: Postgres needs only as many server connections as the client count
  where pgbench's rate stops growing; PgBouncer (transaction mode) multiplexes every worker's
  pool (threads + 4 connections each) onto them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

from bench import pgloop
from bench.figures import Figure
from bench.results import RESULTS_DIR
from bench.runner import Context, Result
from tests import harness

NIGHT_JOBS = 1_000_000
_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


def run(context: Context) -> Result:
    per_job, source = per_job_costs(context)
    seconds = context.size(15, 4)
    clients = (2, 8, 32) if not context.quick else (2, 16)
    url = harness.create_database("imagegen_bench_ceiling")
    try:
        capacity = measure(url, clients, seconds, scale=context.size(10, 1))
    finally:
        harness.drop_database(url)
    sizing = size_fleet(
        per_job, capacity, cores=os.cpu_count() or 1, concurrency=context.concurrency
    )
    details = {"per_job": per_job, "per_job_source": source, "capacity": capacity, **sizing}
    return Result(figures(per_job, source, capacity, sizing), details)


def per_job_costs(context: Context) -> tuple[dict[str, float], str]:
    """Statements, transactions, worker and Postgres CPU per job, from benchmark 2."""
    earlier = context.results.get("overhead")
    if earlier is not None and not earlier.error:
        details, source = earlier.details, "benchmark 2 of this run"
    else:
        latest = json.loads((RESULTS_DIR / "latest.json").read_text())
        details = latest["benchmarks"]["overhead"]["details"]
        source = f"benchmark 2 of {latest['started_at'][:16]} (latest.json)"
    jobs = details["pipeline"]["jobs"]
    cpu = details["cpu_seconds"]["pipeline"]
    return {
        "statements": details["per_job"]["statements"],
        "transactions": details["per_job"]["transactions"],
        "worker_cpu_ms": cpu.get("worker", 0.0) / jobs * 1000,
        "postgres_cpu_ms": cpu.get("postgres", 0.0) / jobs * 1000,
    }, source


def measure(url: str, clients: tuple[int, ...], seconds: int, *, scale: int) -> dict[str, Any]:
    """Transactions per second of simple-update at each client count, select-only at the
    best; with pgbench when installed, else the statements in a loop."""
    if shutil.which("pgbench") is None:
        return pgloop.measure(url, clients, seconds)
    libpq = _libpq(url)
    _pgbench(libpq, "-i", "-q", "-s", str(scale))
    update = {n: _tps(libpq, "simple-update", n, seconds) for n in clients}
    best = max(update, key=lambda n: update[n])
    return {
        "tool": "pgbench",
        "simple_update_tps": update,
        "select_only_tps": _tps(libpq, "select-only", best, seconds),
        "best_clients": best,
        "seconds": seconds,
        "scale": scale,
    }


def size_fleet(
    per_job: dict[str, float], capacity: dict[str, Any], *, cores: int, concurrency: int
) -> dict[str, Any]:
    """Jobs per second one Postgres sustains, the fleet that takes, and a night's cost."""
    statements, transactions = per_job["statements"], per_job["transactions"]
    update_tps = max(capacity["simple_update_tps"].values())
    select_tps = capacity["select_only_tps"]
    seconds_per_job = transactions / update_tps + max(statements - 3 * transactions, 0) / select_tps
    by_pgbench = 1 / seconds_per_job
    by_cpu = cores * 1000 / per_job["postgres_cpu_ms"] if per_job["postgres_cpu_ms"] else None
    jobs_per_s = min(by_pgbench, by_cpu or by_pgbench)  # the job's rows cost more than pgbench's
    processes = math.ceil(jobs_per_s * per_job["worker_cpu_ms"] / 1000)
    return {
        "jobs_per_s": jobs_per_s,
        "jobs_per_s_by_pgbench": by_pgbench,
        "jobs_per_s_by_postgres_cpu": by_cpu,
        "worker_processes": processes,
        "client_connections": processes * (concurrency + 4),
        "server_connections": _enough_clients(capacity["simple_update_tps"]),
        "night": {
            "jobs": NIGHT_JOBS,
            "worker_cpu_hours": NIGHT_JOBS * per_job["worker_cpu_ms"] / 3_600_000,
            "transactions": NIGHT_JOBS * transactions,
            "statements": NIGHT_JOBS * statements,
            "hours_at_ceiling": NIGHT_JOBS / jobs_per_s / 3600,
        },
    }


def figures(
    per_job: dict[str, float],
    source: str,
    capacity: dict[str, Any],
    sizing: dict[str, Any],
) -> list[Figure]:
    update = capacity["simple_update_tps"]
    measured = ", ".join(f"{n} clients {tps:,.0f}" for n, tps in update.items())
    night = sizing["night"]
    inputs = (
        f"per job ({source}): {per_job['statements']:.1f} statements, "
        f"{per_job['transactions']:.1f} transactions, worker CPU "
        f"{per_job['worker_cpu_ms']:.1f} ms, Postgres CPU {per_job['postgres_cpu_ms']:.1f} ms"
    )
    cross = sizing["jobs_per_s_by_postgres_cpu"]
    bounds = f"pgbench model {sizing['jobs_per_s_by_pgbench']:,.0f} jobs/s" + (
        f", Postgres CPU per job on {os.cpu_count()} cores {cross:,.0f} jobs/s" if cross else ""
    )
    return [
        Figure(
            "8 ceiling",
            f"Postgres: {capacity['tool']} simple-update, best of {len(update)} client counts",
            max(update.values()),
            "tx/s",
            note=f"{measured}; select-only {capacity['select_only_tps']:,.0f} tx/s at "
            f"{capacity['best_clients']} clients; {capacity['seconds']} s each",
        ),
        Figure(
            "8 ceiling",
            "jobs/s one Postgres sustains (the lower bound of two)",
            sizing["jobs_per_s"],
            "jobs/s",
            note=f"{bounds}; {inputs}",
        ),
        Figure(
            "8 ceiling",
            "worker processes to reach it (one core each)",
            sizing["worker_processes"],
            "",
            note=f"{sizing['client_connections']:,} pooled client connections into PgBouncer, "
            f"{sizing['server_connections']} server connections to Postgres (pgbench's rate "
            "stops growing past them)",
        ),
        Figure(
            "8 ceiling",
            "1,000,000-job night: worker CPU",
            night["worker_cpu_hours"],
            "CPU-hours",
            note=f"{night['hours_at_ceiling']:.1f} h at the ceiling; one poll per job "
            "(benchmark 2), real jobs poll more",
        ),
        Figure(
            "8 ceiling",
            "1,000,000-job night: database transactions",
            night["transactions"],
            "",
            note=f"{night['statements']:,.0f} statements",
        ),
    ]


def _enough_clients(update_tps: dict[int, float]) -> int:
    """The fewest clients within 10% of the best rate."""
    best = max(update_tps.values())
    return min(n for n, tps in update_tps.items() if tps >= 0.9 * best)


def _tps(libpq: str, script: str, clients: int, seconds: int) -> float:
    out = _pgbench(
        libpq,
        "-b",
        script,
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(seconds),
        "-M",
        "prepared",
        "-n",
    )
    found = _TPS.search(out)
    if not found:
        raise RuntimeError(f"no tps in pgbench's output: {out[-500:]}")
    return float(found.group(1))


def _pgbench(libpq: str, *args: str) -> str:
    done = subprocess.run(
        ["pgbench", *args, libpq], capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed: {done.stderr[-500:]}")
    return done.stdout


def _libpq(url: str) -> str:
    """``postgresql+psycopg://u@h:p/db`` as libpq takes it."""
    parts = urlsplit(url)
    return parts._replace(scheme="postgresql").geturl()
