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
from contextlib import contextmanager
from pathlib import Path
from statistics import median

import httpx

from bench import enqueue, loadgen
from bench.bare_api import TABLE
from bench.figures import Figure, Target
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
        with _server(stack, "api", _api_command) as url:
            api = _load(url, seconds, {"Authorization": f"Bearer {TOKEN}"})
            source = enqueue.write_jsonl(stack.workdir / "batch.jsonl", lines)
            batches = [_batch(url, source) for _ in range(repeats)]
        _create_bare_table()
        with _server(stack, "bare", _bare_command) as url:
            bare = _load(url, seconds, {})
    details = {
        "clients": CLIENTS,
        "server_processes": WORKERS,
        "api": api.as_dict(),
        "bare": bare.as_dict(),
        "batches": batches,
    }
    return Result(figures(seconds, lines, api, bare, batches), details)


def figures(
    seconds: int,
    lines: int,
    api: loadgen.Load,
    bare: loadgen.Load,
    batches: list[dict[str, float]],
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
            f"{bare.latency_ms(99):.0f} ms); answers {dict(api.statuses)}",
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


def _load(url: str, seconds: int, headers: dict[str, str]) -> loadgen.Load:
    target = url + "/v1/jobs"
    loadgen.run(target, BODY, clients=CLIENTS, seconds=_WARM_UP_S, headers=headers)
    return loadgen.run(target, BODY, clients=CLIENTS, seconds=seconds, headers=headers)


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
def _server(stack: Stack, name: str, command: Callable[[int], list[str]]) -> Iterator[str]:
    """A server process on a free port: its URL while it runs; stopped on exit."""
    port = harness.free_port()
    with (stack.workdir / f"{name}.log").open("ab") as sink:
        proc = subprocess.Popen(
            command(port), env={**os.environ, **stack.env}, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        harness.wait_http(url + "/docs", timeout_s=60)
        yield url
    finally:
        harness.stop_process(proc, timeout_s=20)
