"""The services one benchmark runs against, started fresh and torn down after it.

A scratch Postgres database (migrated), moto's S3 server (its large objects in a scratch
TMPDIR, removed at the end), the simulator, and real ``imagegen worker`` / ``imagegen beat``
processes, all through ``tests.harness`` as the test suite and the chaos run start them. This
process is configured as a producer of the same deployment (``enqueue_batch`` writes to the
scratch database and nudges the same broker).

Fleet limits are set far above what a benchmark asks for, so they never limit a figure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import redis
from celery import Celery

from bench.machine import CpuMeter
from tests import harness

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "imagegen-bench"
DEFAULT_REDIS_URL = os.environ.get("IMAGEGEN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
#: Limits that never bind in a benchmark (issue 4's fleet-wide limits and dispatcher; the
#: dispatch interval stays at its default: a new batch wakes the dispatcher at once).
UNLIMITED = {
    "IMAGEGEN_MAX_IN_FLIGHT": "5000",
    "IMAGEGEN_SUBMIT_RATE": "10000",
    "IMAGEGEN_SUBMIT_BURST": "10000",
    "IMAGEGEN_POLL_RATE": "10000",
    "IMAGEGEN_POLL_BURST": "10000",
    "IMAGEGEN_DISPATCH_MAX_PER_CYCLE": "10000",
}
_READY_TIMEOUT_S = 60.0


class Stack:
    """Scratch services for one benchmark; a context manager that removes them on exit."""

    def __init__(
        self,
        workdir: Path,
        *,
        redis_url: str,
        simulator_args: list[str],
        settings: dict[str, str] | None = None,
        services: bool = True,
    ) -> None:
        """``services=False``: the database and the broker only (no S3, no simulator)."""
        self.workdir = workdir
        self.services = services
        self.redis_url = redis_url
        self.simulator_args = simulator_args
        self.settings = settings or {}
        self.env: dict[str, str] = {}
        self.simulator_url = self.s3_url = self.pg_url = ""
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._services: dict[str, subprocess.Popen[bytes]] = {}
        self._saved_env = dict(os.environ)

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        from worker.db.schema import upgrade

        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.pg_url = harness.create_database("imagegen_bench")
            upgrade(self.pg_url)
            if self.services:
                self._start_services()
        except BaseException:
            self._teardown()
            raise
        redis.Redis.from_url(self.redis_url).flushdb()
        self.env = {
            **self._connections(),
            **UNLIMITED,
            "IMAGEGEN_METRICS_PORT": "0",
            "IMAGEGEN_LOG_FORMAT": "json",
            "IMAGEGEN_DATA_DIR": str(self._folder("data")),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "bench" / "hooks"), str(ROOT)]),
            **self.settings,
        }
        harness.use_env(self.env)
        return self

    def _start_services(self) -> None:
        self._services["moto (S3)"], self.s3_url = harness.start_moto(
            self._folder("moto-tmp"), log=self.workdir / "moto.log"
        )
        harness.create_bucket(self.s3_url, BUCKET)
        self._services["simulator"], self.simulator_url = harness.start_simulator(
            self.workdir / "simulator.log", *self.simulator_args
        )

    def _connections(self) -> dict[str, str]:
        if not self.services:
            return {"IMAGEGEN_DATABASE_URL": self.pg_url, "IMAGEGEN_BROKER_URL": self.redis_url}
        return harness.connection_env(
            pg_url=self.pg_url,
            redis_url=self.redis_url,
            s3_endpoint=self.s3_url,
            simulator_url=self.simulator_url,
            bucket=BUCKET,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._teardown()

    def _teardown(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        for proc in self._services.values():
            harness.stop_process(proc, timeout_s=10)
        os.environ.clear()
        os.environ.update(self._saved_env)
        harness.use_env({})
        if self.pg_url:
            harness.drop_database(self.pg_url)
        shutil.rmtree(self.workdir / "moto-tmp", ignore_errors=True)

    def _folder(self, name: str) -> Path:
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # --- processes ------------------------------------------------------------------------------

    def start_workers(
        self,
        count: int,
        concurrency: int,
        *,
        probe: bool = False,
        settings: dict[str, str] | None = None,
    ) -> list[int]:
        """``count`` real ``imagegen worker`` processes and one ``imagegen beat`` (with
        ``settings`` on top of the stack's), once they answer a ping; the workers' pids."""
        env = {**self.env, **(settings or {})}
        if probe:
            env["IMAGEGEN_BENCH_PROBE_DIR"] = str(self.probe_dir)
        names = []
        for index in range(count):
            name = f"bench-worker-{index}-{uuid.uuid4().hex[:4]}@%h"
            self.processes[f"worker-{index}"] = harness.start_worker(
                env, self.workdir / f"worker-{index}.log", concurrency=concurrency, name=name
            )
            names.append(name)
        self.stop("beat")  # one beat per stack, with the settings of the latest workers
        self.processes["beat"] = harness.start_imagegen(env, self.workdir / "beat.log", "beat")
        from worker.broker.app import app

        self._wait_ready(app, names)
        return [self.processes[f"worker-{index}"].pid for index in range(count)]

    def start_baseline_workers(self, count: int, concurrency: int) -> list[int]:
        """``count`` Celery workers of :mod:`bench.celery_baseline`, same pool and settings."""
        from bench.celery_baseline import QUEUE, app

        names = []
        for index in range(count):
            name = f"bench-baseline-{index}-{uuid.uuid4().hex[:4]}@%h"
            log = self.workdir / f"baseline-{index}.log"
            with log.open("ab") as sink:
                self.processes[f"baseline-{index}"] = subprocess.Popen(
                    [
                        str(harness.BIN / "celery"),
                        "-A",
                        "bench.celery_baseline",
                        "worker",
                        "-Q",
                        QUEUE,
                        "-P",
                        "threads",
                        "-c",
                        str(concurrency),
                        "-n",
                        name,
                        "--without-gossip",
                        "--without-mingle",
                        "--loglevel",
                        "WARNING",
                    ],
                    env={**os.environ, **self.env},
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            names.append(name)
        self._wait_ready(app, names)
        return [self.processes[f"baseline-{index}"].pid for index in range(count)]

    def stop(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is not None:
            harness.stop_process(proc, timeout_s=20)

    def stop_all(self, prefix: str) -> None:
        for name in [name for name in self.processes if name.startswith(prefix)]:
            self.stop(name)

    def _wait_ready(self, app: Celery, names: list[str]) -> None:
        wanted = {name.replace("%h", os.uname().nodename) for name in names}
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            replies = app.control.ping(timeout=0.5)
            if wanted <= {node for reply in replies for node in reply}:
                return
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}; see its log in {self.workdir}"
                    )
        raise RuntimeError(
            f"workers {sorted(wanted)} did not answer within "
            f"{_READY_TIMEOUT_S:.0f} s; see the logs in {self.workdir}"
        )

    # --- observing ------------------------------------------------------------------------------

    @property
    def probe_dir(self) -> Path:
        return self._folder("probe")

    def cpu_meter(self) -> CpuMeter:
        """A meter over every process of this stack, grouped by role."""
        groups: dict[str, list[int]] = {"bench (producer)": [os.getpid()]}
        for name, proc in self.processes.items():
            groups.setdefault(name.split("-")[0], []).append(proc.pid)
        groups.update({name: [proc.pid] for name, proc in self._services.items()})
        return CpuMeter(groups)

    def simulator(self, path: str) -> Any:
        """GET an admin path of the simulator (``/_sim/stats``...)."""
        response = httpx.get(self.simulator_url + path, timeout=60)
        response.raise_for_status()
        return response.json()

    def configure_simulator(self, **changes: Any) -> None:
        httpx.post(self.simulator_url + "/_sim/config", json=changes, timeout=30).raise_for_status()

    def s3_requests(self) -> dict[str, int]:
        """Requests moto served so far, by HTTP method (its log has one line per request)."""
        counts: dict[str, int] = {}
        with (self.workdir / "moto.log").open(errors="replace") as log:
            for line in log:
                start = line.find('] "')
                if start >= 0:
                    method = line[start + 3 :].split(" ", 1)[0]
                    counts[method] = counts.get(method, 0) + 1
        return counts
