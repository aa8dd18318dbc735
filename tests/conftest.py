"""Shared fixtures: real Postgres, Redis, an S3 server (moto) and the simulator over HTTP.

One fresh Postgres database per test session (migrated with Alembic), tables emptied before
each test that uses it; one Redis database index flushed at the start; moto's S3 server and
the simulator run as separate processes on free ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("IMAGEGEN_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("IMAGEGEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
API_KEY = "sk-test-4f8d2c9e1b7a"
BUCKET = "imagegen-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout_s} s")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- services ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated database on the local Postgres, dropped at the end."""
    from worker.db import upgrade

    name = f"imagegen_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.exit(f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); run "
                    "scripts/ensure-services.sh or set IMAGEGEN_TEST_PG_URL", returncode=1)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis_lib.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis_lib.RedisError as exc:
        pytest.exit(f"Redis is not reachable at {REDIS_URL} ({exc}); run "
                    "scripts/ensure-services.sh or set IMAGEGEN_TEST_REDIS_URL", returncode=1)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server as its own process (it keeps large objects in TMPDIR)."""
    port = free_port()
    tmp = tmp_path_factory.mktemp("moto")
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url)
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def aws_env() -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def simulator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The project's simulator over real HTTP, as its own process (`imagegen simulator`)."""
    port = free_port()
    log = tmp_path_factory.mktemp("sim") / "simulator.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(BIN / "imagegen"), "simulator", "--port", str(port), "--api-key", API_KEY,
             "--latency", "1080p=0.3-1.2", "--latency", "2K=0.5-1.5",
             "--latency", "4K=0.8-2"],
            stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/_sim/stats")
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def service_env(pg_url: str, redis_url: str, s3_endpoint: str, simulator_url: str,
                aws_env: dict[str, str]) -> dict[str, str]:
    """The environment of a service-mode deployment against the test servers."""
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, **_boto_kwargs(aws_env)).create_bucket(
        Bucket=BUCKET)
    return {
        **aws_env,
        "IMAGEGEN_DATABASE_URL": pg_url,
        "IMAGEGEN_BROKER_URL": redis_url,
        "IMAGEGEN_STORAGE_URL": f"s3://{BUCKET}/images",
        "IMAGEGEN_S3_ENDPOINT_URL": s3_endpoint,
        "GPTPROTO_API_KEY": API_KEY,
        "GPTPROTO_BASE_URL": simulator_url,
        "IMAGEGEN_POLL_INITIAL_DELAY_S": "0.5",
        "IMAGEGEN_POLL_INTERVAL_S": "0.3",
        "IMAGEGEN_POLL_MAX_INTERVAL_S": "1",
        "IMAGEGEN_RETRY_BASE_S": "0.2",
        "IMAGEGEN_RETRY_MAX_S": "2",
        "IMAGEGEN_LOG_LEVEL": "INFO",
    }


def _boto_kwargs(aws_env: dict[str, str]) -> dict[str, str]:
    return {"aws_access_key_id": aws_env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": aws_env["AWS_SECRET_ACCESS_KEY"],
            "region_name": aws_env["AWS_DEFAULT_REGION"]}


@pytest.fixture
def configured(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process configured like a service-mode producer, tables emptied first."""
    from worker.celery_app import reconfigure
    from worker.db import get_engine, reset_engine
    from worker.runtime import reset_pipeline
    from worker.settings import reset_settings

    for key, value in service_env.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    reset_engine()
    reset_pipeline()
    reconfigure()
    with get_engine().begin() as conn:
        conn.execute(text("TRUNCATE jobs, job_images, job_events"))
    yield
    reset_pipeline()
    reset_engine()
    reset_settings()


@pytest.fixture
def worker_process(service_env: dict[str, str], tmp_path: Path
                   ) -> Iterator[subprocess.Popen[bytes]]:
    """A real `imagegen worker` process against the test servers."""
    log = tmp_path / "worker.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(BIN / "imagegen"), "worker", "-c", "8", "-n", f"test-{uuid.uuid4().hex[:6]}"],
            env={**os.environ, **service_env}, stdout=sink, stderr=subprocess.STDOUT)
    yield proc
    stop_process(proc)
    if os.environ.get("IMAGEGEN_TEST_KEEP_LOGS"):
        shutil.copy(log, ROOT / "worker-test.log")
