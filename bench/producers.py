"""7. Producers under load: the HTTP API's ``POST /v1/jobs`` and ``POST /v1/batches``.

``imagegen api`` (uvicorn, ``WORKERS`` processes) against a scratch database and the broker,
no workers: what a producer waits for is the validation, the job's row and event, and the
nudge of the broker after the commit. ``POST /v1/jobs`` takes 64 concurrent callers for 30 s
from a bounded load generator on 127.0.0.1 (``bench.loadgen``); the baseline is a bare FastAPI
endpoint doing one INSERT (``bench.bare_api``), served the same way, loaded the same way, in
the same run. ``POST /v1/batches`` takes 10,000 JSONL lines (the enqueue benchmark's file);
its baseline is a raw COPY of the very rows it wrote into a copy of ``jobs`` (as benchmark 1).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from statistics import median
from typing import Any

import httpx

from bench import enqueue, loadgen, probe
from bench.bare_api import TABLE
from bench.figures import Figure, Target
from bench.machine import CpuMeter
from bench.profiler import Profiler
from bench.runner import Context, Result
from bench.stack import Stack
from bench.stats import rate
from tests import harness

CLIENTS = 64
WORKERS = 2  # server processes, for the API and the bare endpoint alike: one per core
TOKEN = "bench-token-" + "0" * 32
#: Both servers' database pools (the same settings: the bare endpoint uses the project's
#: engine): 10 connections per process and no overflow. 64 callers on FastAPI's 40 threads
#: per process would otherwise open up to 20 per process, and the shared Postgres of a test
#: machine (max_connections 100) answered "too many clients" under the other sessions' load.
POOL = {"IMAGEGEN_DB_POOL_SIZE": "10", "IMAGEGEN_DB_MAX_OVERFLOW": "0"}
BODY = {"prompt": "a lighthouse at dawn, oil painting", "resolution": "2K", "seed": 7}
_WARM_UP_S = 3.0


def run(context: Context) -> Result:
    seconds = context.size(30, 5)
    lines = context.size(10_000, 2_000)
    repeats = context.size(3, 1)
    settings = {"IMAGEGEN_API_TOKENS": TOKEN, **POOL}
    with context.stack("producers", settings=settings, services=False) as stack:
        with _server(stack, "api", _api_command) as (url, proc, folder):
            auth = {"Authorization": f"Bearer {TOKEN}"}
            api, api_cost = _load(url, proc, folder, seconds, auth, context)
            source = enqueue.write_jsonl(stack.workdir / "batch.jsonl", lines)
            batches = [_batch(url, source) for _ in range(repeats)]
        _create_bare_table()
        with _server(stack, "bare", _bare_command) as (url, proc, folder):
            bare, bare_cost = _load(url, proc, folder, seconds, {}, context)
    details = {
        "clients": CLIENTS,
        "server_processes": WORKERS,
        "api": {**api.as_dict(), "per_request": api_cost},
        "bare": {**bare.as_dict(), "per_request": bare_cost},
        "batches": batches,
    }
    return Result(figures(seconds, lines, api, bare, batches, details), details)


def figures(
    seconds: int,
    lines: int,
    api: loadgen.Load,
    bare: loadgen.Load,
    batches: list[dict[str, float]],
    details: dict[str, Any],
) -> list[Figure]:
    api_s = median(b["api_s"] for b in batches)
    copy_s = median(b["copy_s"] for b in batches)
    return [
        Figure(
            "7 producers",
            f"POST /v1/jobs, {CLIENTS} clients for {seconds} s",
            api.per_s,
            "jobs/s",
            bare.per_s,
            "bare FastAPI endpoint, one INSERT",
            Target(">=", 0.7),
            f"{WORKERS} server processes each; p50 {api.latency_ms(50):.0f} ms, p99 "
            f"{api.latency_ms(99):.0f} ms (bare: p50 {bare.latency_ms(50):.0f} ms, p99 "
            f"{bare.latency_ms(99):.0f} ms); answers {dict(api.statuses)}; per request: "
            f"{_cost(details['api']['per_request'])} (bare: "
            f"{_cost(details['bare']['per_request'])})",
        ),
        Figure(
            "7 producers",
            "POST /v1/jobs, p99 latency",
            api.latency_ms(99),
            "ms",
            bare.latency_ms(99),
            "bare endpoint",
        ),
        Figure(
            "7 producers",
            "POST /v1/jobs, errors (not 2xx, or no answer)",
            api.errors,
            "",
            target=Target("<=", 0, on="value"),
            note=f"bare endpoint: {bare.errors}",
        ),
        Figure(
            "7 producers",
            f"POST /v1/batches, {lines:,} JSONL lines",
            rate(lines, api_s),
            "rows/s",
            rate(lines, copy_s),
            "raw COPY of its rows, a copy of jobs",
            Target(">=", 0.5),
            f"request to answer (202), median of {len(batches)}",
        ),
    ]


def _load(
    url: str,
    server: subprocess.Popen[bytes],
    folder: Path,
    seconds: int,
    headers: dict[str, str],
    context: Context,
) -> tuple[loadgen.Load, dict[str, Any]]:
    """A warm-up, then the measured load, with the server's database work and CPU per
    answered request (its processes' probe, the CPU meter over them and Postgres)."""
    target = url + "/v1/jobs"
    loadgen.run(target, BODY, clients=CLIENTS, seconds=_WARM_UP_S, headers=headers)
    before = probe.read_all(folder)
    children = _children(server.pid)
    meter = CpuMeter({"server": [server.pid, *children], "load generator": [os.getpid()]})
    profiler = (  # with --profile: py-spy on each server process, files kept per server
        Profiler(folder.with_name(f"profiles-{folder.name}"), {str(pid): pid for pid in children})
        if context.profile
        else None
    )
    meter.start()
    with profiler or nullcontext():
        load = loadgen.run(target, BODY, clients=CLIENTS, seconds=seconds, headers=headers)
    cpu = meter.stop()
    time.sleep(1.5)  # the probes write their counts twice a second
    db = probe.difference(probe.read_all(folder), before)
    done = max(load.ok, 1)
    events = db["events"]
    return load, {
        "statements": round(sum(n for n, _ in db["statements"].values()) / done, 2),
        "transactions": round((events.get("commit", 0) + events.get("rollback", 0)) / done, 2),
        "server_cpu_ms": round(cpu["server"] / done * 1000, 2),
        "postgres_cpu_ms": round(cpu.get("postgres", 0.0) / done * 1000, 2),
        "load_generator_cpu_ms": round(cpu["load generator"] / done * 1000, 2),
        "machine_busy_share": cpu["machine_busy_share"],
        "others_cpu_s": cpu["others"],
        "profile": profiler.summary() if profiler else None,
    }


def _cost(per_request: dict[str, float]) -> str:
    return (
        f"{per_request['statements']:g} statements in {per_request['transactions']:g} "
        f"transactions, server CPU {per_request['server_cpu_ms']:.1f} ms, Postgres CPU "
        f"{per_request['postgres_cpu_ms']:.1f} ms, load generator CPU "
        f"{per_request['load_generator_cpu_ms']:.1f} ms; machine busy "
        f"{per_request['machine_busy_share']:.0%}"
    )


def _children(pid: int) -> list[int]:
    """The server's worker processes (uvicorn ``--workers``), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(child) for child in task.read_text().split()]
    return found


def _batch(url: str, source: Path) -> dict[str, float]:
    """One ``POST /v1/batches`` of ``source``, then the raw COPY of the rows it wrote."""
    enqueue.empty_job_tables()
    body = source.read_bytes()
    started = time.perf_counter()
    response = httpx.post(
        url + "/v1/batches",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"},
        timeout=600,
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    rows = enqueue.export_rows(response.json()["id"])
    return {"api_s": elapsed, "copy_s": enqueue.raw_copy(rows, like_jobs=True)}


def _create_bare_table() -> None:
    from sqlalchemy import text

    from worker.db.engine import get_engine

    with get_engine().begin() as conn:
        conn.execute(text(TABLE))


def _api_command(port: int) -> list[str]:
    return [str(harness.BIN / "imagegen"), "api", "--port", str(port), "--workers", str(WORKERS)]


def _bare_command(port: int) -> list[str]:
    return [
        str(harness.BIN / "uvicorn"),
        "bench.bare_api:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(WORKERS),
        "--no-access-log",
        "--proxy-headers",
        "--log-level",
        "warning",
    ]


@contextmanager
def _server(
    stack: Stack, name: str, command: Callable[[int], list[str]]
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """A server process on a free port, its processes probed (``bench.probe``): its URL,
    process and probe folder while it runs; stopped on exit."""
    port = harness.free_port()
    folder = stack.workdir / f"probe-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **stack.env, probe.ENV: str(folder)}
    with (stack.workdir / f"{name}.log").open("ab") as sink:
        proc = subprocess.Popen(command(port), env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        harness.wait_http(url + "/docs", timeout_s=60)
        yield url, proc, folder
    finally:
        harness.stop_process(proc, timeout_s=20)
