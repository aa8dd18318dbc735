"""Shared fixtures: real Postgres, Redis, an S3 server (moto) and the simulator over HTTP.

One fresh Postgres database per test session (migrated with Alembic), tables emptied before
each test that uses it; one Redis database index flushed at the start; moto's S3 server and
the simulator run as separate processes on free ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from psycopg.errors import DeadlockDetected
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

import models
from tests import harness
from tests.harness import API_KEY, BIN, PG_ADMIN_URL, REDIS_URL, stop_process
from tests.stand_ins import RecordingPorts
from worker.broker import wiring
from worker.broker.tasks import CeleryPorts
from worker.core import ports
from worker.db.engine import get_engine
from worker.db.schema import upgrade
from worker.store import fleet

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "imagegen-test"
__all__ = ["API_KEY", "BIN", "BUCKET", "PG_ADMIN_URL", "ROOT"]


# --- services ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated database on the local Postgres, dropped at the end."""
    try:
        url = harness.create_database()
    except Exception as exc:  # whatever the driver raised, say how to fix it
        pytest.exit(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); run "
            "scripts/ensure-services.sh or set IMAGEGEN_TEST_PG_URL",
            returncode=1,
        )
    upgrade(url)
    yield url
    harness.drop_database(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis_lib.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis_lib.RedisError as exc:
        pytest.exit(
            f"Redis is not reachable at {REDIS_URL} ({exc}); run "
            "scripts/ensure-services.sh or set IMAGEGEN_TEST_REDIS_URL",
            returncode=1,
        )
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = harness.start_moto(tmp_path_factory.mktemp("moto"))
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def aws_env() -> dict[str, str]:
    return dict(harness.AWS_ENV)


@pytest.fixture(scope="session")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The project's simulator over real HTTP, as its own process (`imagegen simulator`)."""
    log = tmp_path_factory.mktemp("sim") / "simulator.log"
    proc, url = harness.start_simulator(
        log, "--latency", "1080p=0.3-1.2", "--latency", "2K=0.5-1.5", "--latency", "4K=0.8-2"
    )
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def service_env(
    pg_url: str, redis_url: str, s3_endpoint: str, simulator_url: str
) -> dict[str, str]:
    """The environment of a service-mode deployment against the test servers."""
    harness.create_bucket(s3_endpoint, BUCKET)
    return harness.service_env(
        pg_url=pg_url,
        redis_url=redis_url,
        s3_endpoint=s3_endpoint,
        simulator_url=simulator_url,
        bucket=BUCKET,
    )


def empty_tables(engine: Engine, tables: str, attempts: int = 5) -> None:
    """TRUNCATE the tables. A module's worker, beat or API server may be reading them meanwhile:
    TRUNCATE locks table after table, so Postgres may pick it as a deadlock's victim; try again."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} CASCADE"))
            return
        except OperationalError as exc:
            if not isinstance(exc.orig, DeadlockDetected) or attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


@pytest.fixture(autouse=True)
def wired() -> Iterator[None]:
    """This process sends through Celery, as the command line, the API and producers do (a
    test may install a stand-in over it: ``recorded``)."""
    previous = ports.install(CeleryPorts())
    yield
    ports.install(previous)


@pytest.fixture
def recorded() -> Iterator[RecordingPorts]:
    """A stand-in for the broker: what this process asked to send, recorded and not sent."""
    fake = RecordingPorts()
    previous = ports.install(fake)
    yield fake
    ports.install(previous)


@pytest.fixture
def configured(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process configured like a service-mode producer, tables emptied first."""
    for key, value in service_env.items():
        monkeypatch.setenv(key, value)
    wiring.reset()
    tables = ", ".join(t.name for t in models.Base.metadata.sorted_tables)
    empty_tables(get_engine(), tables)
    fleet.read_fleet_state()  # the fleet's control rows, as the migration leaves them
    yield
    wiring.forget()


@pytest.fixture
def worker_process(
    service_env: dict[str, str], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `imagegen worker` process against the test servers."""
    log = tmp_path / "worker.log"
    proc = harness.start_worker(service_env, log)
    yield proc
    stop_process(proc)
    if os.environ.get("IMAGEGEN_TEST_KEEP_LOGS"):
        shutil.copy(log, ROOT / f"worker-test-{uuid.uuid4().hex[:6]}.log")


@pytest.fixture
def beat_process(service_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `imagegen beat` process sending reconciler passes every second."""
    proc = harness.start_imagegen(
        {**service_env, "IMAGEGEN_DATA_DIR": str(tmp_path)}, tmp_path / "beat.log", "beat"
    )
    yield proc
    stop_process(proc)


@pytest.fixture
def start_worker(
    service_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start extra `imagegen worker` processes (with settings of their own); all are stopped
    at the end of the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**overrides: str) -> subprocess.Popen[bytes]:
        proc = harness.start_worker(
            {**service_env, **overrides}, tmp_path / f"worker-{len(procs)}.log"
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc)


@pytest.fixture(scope="module")
def module_worker(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """One `imagegen worker` and one `imagegen beat` shared by a module's tests (starting a
    worker takes seconds; tests that need workers with settings of their own use
    ``start_worker`` in a module without this fixture)."""
    tmp = tmp_path_factory.mktemp("module-worker")
    worker = harness.start_worker(service_env, tmp / "worker.log")
    beat = harness.start_imagegen(
        {**service_env, "IMAGEGEN_DATA_DIR": str(tmp)}, tmp / "beat.log", "beat"
    )
    yield worker
    stop_process(beat)
    stop_process(worker)
    if os.environ.get("IMAGEGEN_TEST_KEEP_LOGS"):
        shutil.copy(tmp / "worker.log", ROOT / f"worker-test-{uuid.uuid4().hex[:6]}.log")
