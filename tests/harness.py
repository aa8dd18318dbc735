"""Start and stop the real services the tests, the chaos run and the benchmarks use.

Plain functions, so that pytest fixtures (tests/conftest.py), the standalone chaos script
(tests/chaos.py) and the benchmarks (bench/) share them: a scratch Postgres database, moto's S3
server, the simulator, and `imagegen worker` / `imagegen beat` processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from worker.broker import wiring
from worker.broker.tasks import install_ports

BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get(
    "IMAGEGEN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("IMAGEGEN_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
API_KEY = "sk-test-4f8d2c9e1b7a"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


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


def _admin(sql: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(sql))
    finally:
        admin.dispose()


def create_database(prefix: str = "imagegen_test") -> str:
    """A new, empty database on the local server; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def start_moto(tmp: Path, log: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3-compatible server as its own process (it keeps large objects in TMPDIR).

    With ``log``, its output goes there: one line per request it served."""
    port = free_port()
    with log.open("ab") if log else open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(tmp)},
        )
    url = f"http://127.0.0.1:{port}"
    wait_http(url)
    return proc, url


def create_bucket(endpoint: str, bucket: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
    ).create_bucket(Bucket=bucket)


def start_simulator(log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """`imagegen simulator` on a free port, accepting API_KEY."""
    port = free_port()
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [
                str(BIN / "imagegen"),
                "simulator",
                "--port",
                str(port),
                "--api-key",
                API_KEY,
                "--log-level",
                "warning",
                *args,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/_sim/stats")
    return proc, url


def pgbouncer_binary() -> str | None:
    """PgBouncer's executable (Debian's ``pgbouncer`` package puts it in /usr/sbin), or None."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    return found


def start_pgbouncer(
    pg_url: str, *, pool_size: int = 4
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """A PgBouncer in transaction mode in front of ``pg_url``'s server, on a free port, with
    few server connections (so transactions of different clients share them); returns the
    process, ``pg_url`` pointing through it, and its folder (log, config).

    Trust auth for the test server's users; run as ``postgres`` when this is root (PgBouncer
    refuses to run as root), so its folder is world-readable."""
    binary = pgbouncer_binary()
    assert binary, "pgbouncer is not installed"
    url = make_url(pg_url)
    folder = Path(tempfile.mkdtemp(prefix="imagegen-pgbouncer-"))
    folder.chmod(0o777)
    port = free_port()
    (folder / "userlist.txt").write_text(f'"{url.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={url.host or '127.0.0.1'} port={url.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 500\n"
        f"logfile = {folder / 'pgbouncer.log'}\npidfile = {folder / 'pgbouncer.pid'}\n"
        # newer PgBouncers can track prepared statements themselves: not this one's job
        + ("max_prepared_statements = 0\n" if _pgbouncer_version(binary) >= (1, 21) else "")
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    user = ["-u", "postgres"] if os.geteuid() == 0 else []
    with (folder / "stderr.log").open("wb") as sink:
        proc = subprocess.Popen(
            [binary, *user, str(folder / "pgbouncer.ini")], stdout=sink, stderr=subprocess.STDOUT
        )
    through = url.set(port=port).render_as_string(hide_password=False)
    _wait_sql(through, proc, folder)
    return proc, through, folder


def _pgbouncer_version(binary: str) -> tuple[int, ...]:
    first = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    numbers = first.split()[1] if len(first.split()) > 1 else "0"
    return tuple(int(part) for part in numbers.split(".")[:2] if part.isdigit())


def _wait_sql(url: str, proc: subprocess.Popen[bytes], folder: Path, timeout_s: float = 15) -> None:
    engine = create_engine(url, poolclass=NullPool, connect_args={"prepare_threshold": None})
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    logs = [(folder / name).read_text() for name in ("stderr.log",)]
                    raise RuntimeError(f"PgBouncer did not come up: {logs}") from None
                time.sleep(0.1)
    finally:
        engine.dispose()


def run_imagegen(
    env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """The installed `imagegen` command run to its end, as an operator runs it, with ``env`` on
    top of this environment; its exit code, stdout and stderr (never raises on failure)."""
    return subprocess.run(
        [str(BIN / "imagegen"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout_s,
        check=False,
    )


def start_imagegen(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    """An `imagegen ...` process (worker, beat) with ``env`` on top of this environment."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [str(BIN / "imagegen"), *args],
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def start_worker(
    env: dict[str, str], log: Path, *, concurrency: int = 8, name: str | None = None
) -> subprocess.Popen[bytes]:
    return start_imagegen(
        env, log, "worker", "-c", str(concurrency), "-n", name or f"test-{uuid.uuid4().hex[:6]}@%h"
    )


def connection_env(
    *, pg_url: str, redis_url: str, s3_endpoint: str, simulator_url: str, bucket: str
) -> dict[str, str]:
    """A service-mode deployment against the given servers, every tuning at its default."""
    return {
        **AWS_ENV,
        "IMAGEGEN_DATABASE_URL": pg_url,
        "IMAGEGEN_BROKER_URL": redis_url,
        "IMAGEGEN_STORAGE_URL": f"s3://{bucket}/images",
        "IMAGEGEN_S3_ENDPOINT_URL": s3_endpoint,
        "GPTPROTO_API_KEY": API_KEY,
        **provider_env(simulator_url),
    }


def provider_env(simulator_url: str) -> dict[str, str]:
    """The provider at ``simulator_url``, whose outputs (served from the same local host and
    port) the workers may fetch although the address is private."""
    return {
        "GPTPROTO_BASE_URL": simulator_url,
        "IMAGEGEN_TRUSTED_OUTPUT_HOSTS": urlsplit(simulator_url).netloc,
    }


def service_env(
    *, pg_url: str, redis_url: str, s3_endpoint: str, simulator_url: str, bucket: str
) -> dict[str, str]:
    """A service-mode deployment against the given servers, tuned for quick tests."""
    return {
        **connection_env(
            pg_url=pg_url,
            redis_url=redis_url,
            s3_endpoint=s3_endpoint,
            simulator_url=simulator_url,
            bucket=bucket,
        ),
        "IMAGEGEN_POLL_INITIAL_DELAY_S": "0.5",
        "IMAGEGEN_POLL_INTERVAL_S": "0.3",
        "IMAGEGEN_POLL_MAX_INTERVAL_S": "1",
        "IMAGEGEN_RETRY_BASE_S": "0.2",
        "IMAGEGEN_RETRY_MAX_S": "2",
        "IMAGEGEN_SUBMIT_TIMEOUT_S": "5",
        "IMAGEGEN_CONNECT_TIMEOUT_S": "2",
        "IMAGEGEN_SUBMIT_LEASE_S": "10",
        "IMAGEGEN_TRANSFER_LEASE_S": "8",
        "IMAGEGEN_DOWNLOAD_TIMEOUT_S": "6",
        "IMAGEGEN_RECONCILE_INTERVAL_S": "1",
        "IMAGEGEN_STALE_AFTER_S": "3",
        "IMAGEGEN_LOG_LEVEL": "INFO",
        "IMAGEGEN_METRICS_PORT": "0",
        # fleet limits wide enough not to slow the suites down, but on (tests of the limits
        # set their own); cool-downs and the breaker's wait kept short
        "IMAGEGEN_SUBMIT_RATE": "500",
        "IMAGEGEN_SUBMIT_BURST": "500",
        "IMAGEGEN_MAX_IN_FLIGHT": "1000",
        "IMAGEGEN_POLL_RATE": "2000",
        "IMAGEGEN_POLL_BURST": "2000",
        "IMAGEGEN_DISPATCH_INTERVAL_S": "0.5",
        "IMAGEGEN_DISPATCH_LOST_AFTER_S": "5",
        "IMAGEGEN_COOLDOWN_MAX_S": "4",
        "IMAGEGEN_BREAKER_OPEN_S": "2",
    }


def use_env(env: dict[str, str]) -> None:
    """Configure this process (a producer, a checker) like the processes started with ``env``;
    an empty ``env`` only drops what was built from the previous settings. Sends go through
    Celery, as in any producer process."""
    os.environ.update(env)
    if env:
        wiring.reset()
    else:
        wiring.forget()
    install_ports()
