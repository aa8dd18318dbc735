"""A broker outage loses nothing and stops nothing: with work in flight, Redis stopped (not
flushed) and started again empty, the same worker and beat processes reconnect by themselves,
producers keep enqueueing meanwhile (the row is the record), and every job finishes. Real
worker, beat, Postgres, the S3 server, the simulator and a ``redis-server`` of the test's own
(stopping the shared one would break the other suites)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import harness
from tests.outages import RedisServer
from tests.waiting import tagged_prompt, wait_for
from worker.broker import wiring
from worker.broker.tasks import install_ports
from worker.service import jobs

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_broker(
    configured: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisServer]:
    """A Redis of this test's own, which this process (a producer) sends through."""
    broker = RedisServer(tmp_path / "redis.log")
    broker.start()
    monkeypatch.setenv("IMAGEGEN_BROKER_URL", broker.url)
    wiring.reset()
    install_ports()
    yield broker
    broker.stop()


def _fleet(env: dict[str, str], tmp_path: Path) -> list[subprocess.Popen[bytes]]:
    worker = harness.start_worker(env, tmp_path / "worker.log")
    beat = harness.start_imagegen(
        {**env, "IMAGEGEN_DATA_DIR": str(tmp_path)}, tmp_path / "beat.log", "beat"
    )
    return [worker, beat]


def test_workers_and_beat_outlive_a_broker_outage(
    own_broker: RedisServer, service_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a worker and a beat on a broker, with jobs in flight (submitted, being polled)
    env = {**service_env, "IMAGEGEN_BROKER_URL": own_broker.url}
    worker, beat = procs = _fleet(env, tmp_path)
    try:
        first = [jobs.enqueue({"prompt": tagged_prompt("before"), "seed": n}) for n in range(1, 9)]
        wait_for(first, timeout_s=60, until=lambda view: view["status"] != "queued")

        # When the broker stops, producers enqueue meanwhile, and it comes back empty
        own_broker.stop()
        during = [jobs.enqueue({"prompt": tagged_prompt("during"), "seed": n}) for n in range(1, 5)]
        time.sleep(8)
        own_broker.start()

        # Then every job finishes, through the same worker and beat processes
        views = wait_for([*first, *during], timeout_s=180)
        assert {view["status"] for view in views.values()} == {"succeeded"}, views
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        assert beat.poll() is None, (tmp_path / "beat.log").read_text()[-3000:]
        log = (tmp_path / "worker.log").read_text()
        assert "Unrecoverable error" not in log
        assert "Connection to broker lost" in log  # the outage did reach the worker
    finally:
        for proc in reversed(procs):
            harness.stop_process(proc)
