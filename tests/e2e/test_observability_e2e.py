"""What an operator observes of a real run: the worker's Prometheus counters agree with what the
jobs did (as recorded in Postgres), and its logs are JSON lines that never contain the API key,
errors included. Real worker process, Postgres, Redis, moto S3 and the simulator over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from tests.harness import (
    API_KEY,
    free_port,
    run_imagegen,
    start_imagegen,
    stop_process,
    wait_http,
)
from tests.waiting import wait_for
from worker.db.engine import get_engine
from worker.service import jobs

pytestmark = pytest.mark.e2e


@dataclass
class Observed:
    """A running worker: where its metrics are served and where its output goes."""

    metrics_url: str
    log: Path
    proc: subprocess.Popen[bytes]


StartWorker = Callable[..., Observed]


@pytest.fixture
def start_worker(service_env: dict[str, str], tmp_path: Path) -> Iterator[StartWorker]:
    """Start `imagegen worker` with its metrics on a free port (stopped at the end)."""
    started: list[Observed] = []

    def start(**env: str) -> Observed:
        port = free_port()
        log = tmp_path / f"worker-{len(started)}.log"
        proc = start_imagegen(
            {**service_env, "IMAGEGEN_METRICS_PORT": str(port), **env},
            log,
            "worker",
            "-c",
            "8",
            "-n",
            f"obs-{uuid.uuid4().hex[:6]}@%h",
        )
        started.append(Observed(f"http://127.0.0.1:{port}/metrics", log, proc))
        wait_http(started[-1].metrics_url)
        return started[-1]

    yield start
    for worker in started:
        stop_process(worker.proc)


def prompt(tokens: str = "") -> str:
    return f"observed {uuid.uuid4().hex[:8]} {tokens}".strip()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = httpx.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def metric(found: dict, name: str, **labels: str) -> float:
    return float(found.get((name, tuple(sorted(labels.items()))), 0.0))


def rows(query: str, **params: Any) -> list[Any]:
    with get_engine().connect() as conn:
        return list(conn.execute(text(query), params))


def eventually(check: Callable[[], None], timeout_s: float = 10.0) -> None:
    """A worker counts a transition right after its commit: give that a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


cli = run_imagegen  # the installed command, as an operator runs it


# --- metrics ----------------------------------------------------------------------------------


def test_worker_metrics_agree_with_what_the_jobs_did(
    configured, service_env, start_worker, beat_process
) -> None:
    # Given a worker, three ordinary jobs, one the provider fails, one rate limited twice
    # and one whose deadline passes before it is submitted
    metrics_url = start_worker().metrics_url
    ok = [jobs.enqueue({"prompt": prompt(), "resolution": res}) for res in ("1080p", "2K", "4K")]
    provider_failed = jobs.enqueue({"prompt": prompt("[sim:failed=ModelUnavailable]")})
    limited = jobs.enqueue({"prompt": prompt("[sim:http_429] [sim:recover_after=2]")})
    late = jobs.enqueue({"prompt": prompt()}, deadline_s=0.001)
    views = wait_for([*ok, provider_failed, limited, late], timeout_s=120)
    assert [views[j]["status"] for j in ok] == ["succeeded"] * 3
    assert views[provider_failed]["error_code"] == "provider_failed"
    assert views[limited]["status"] == "succeeded"  # a 429 slows the fleet, fails no job
    assert views[late]["error_code"] == "deadline_exceeded"

    # When the operator retries the late job (a fresh deadline) and it goes through
    retried = cli(service_env, "retry", "--failed", "--code", "deadline_exceeded", "--json")
    assert json.loads(retried.stdout)["ids"] == [str(late)], retried.stderr
    assert wait_for([late], timeout_s=60)[late]["status"] == "succeeded"

    # Then every transition the worker made is counted once, as the event log has it
    worker_moves = Counter(
        {
            (src, dst): n
            for src, dst, n in rows(
                "SELECT from_status, to_status, count(*) FROM job_events "
                "WHERE from_status IS NOT NULL GROUP BY 1, 2"
            )
        }
    )
    worker_moves.pop(("failed", "queued"))  # the CLI's retry, counted in the CLI's process

    def transitions_match() -> None:
        found = scrape(metrics_url)
        counted = {
            (dict(k[1])["from_status"], dict(k[1])["to_status"]): v
            for k, v in found.items()
            if k[0] == "imagegen_job_transitions_total"
        }
        assert counted == worker_moves

    eventually(transitions_match)
    found = scrape(metrics_url)
    _check_provider_counters(found, limited)
    _check_polls_and_transfers(found)


def _check_provider_counters(found: dict, limited: uuid.UUID) -> None:
    submitted = rows("SELECT count(*) FROM job_events WHERE event = 'submitted'")[0][0]
    assert jobs.status(limited)["attempts"] == 1  # the refused tries were not counted
    assert (
        metric(found, "imagegen_provider_responses_total", endpoint="submit", code="200")
        == submitted
    )
    assert metric(found, "imagegen_provider_responses_total", endpoint="submit", code="429") == 2
    assert metric(found, "imagegen_provider_rate_limited_total", endpoint="submit") == 2
    results = sum(
        v
        for (name, labels), v in found.items()
        if name == "imagegen_provider_responses_total" and ("endpoint", "result") in labels
    )
    assert results >= submitted
    assert (
        metric(found, "imagegen_provider_request_duration_seconds_count", endpoint="result")
        == results
    )
    codes = {
        dict(labels)["code"]
        for (name, labels) in found
        if name == "imagegen_provider_responses_total"
    }
    assert codes <= {"200", "429"}  # bounded: status codes, never ids


def _check_polls_and_transfers(found: dict) -> None:
    left_running, polls = rows(
        "SELECT count(*), coalesce(sum(poll_count), 0) FROM jobs WHERE id IN "
        "(SELECT job_id FROM job_events WHERE from_status = 'running')"
    )[0]
    assert metric(found, "imagegen_job_polls_count") == left_running == 6
    assert metric(found, "imagegen_job_polls_sum") == polls
    images, stored = rows("SELECT count(*), sum(bytes) FROM job_images")[0]
    assert metric(found, "imagegen_transfer_bytes_total") == stored > 0
    assert metric(found, "imagegen_transfer_duration_seconds_count") == images == 5


# --- logs -------------------------------------------------------------------------------------


def test_worker_logs_are_json_lines_and_never_contain_the_api_key(
    configured, start_worker, beat_process
) -> None:
    # Given a worker logging everything (DEBUG) and jobs that meet provider errors: server
    # errors on every submit, a failed prediction, one that goes through, then a rejected key
    worker = start_worker(IMAGEGEN_LOG_LEVEL="DEBUG")
    log = worker.log
    others = [
        jobs.enqueue({"prompt": prompt(tokens)})
        for tokens in ("[sim:http_500]", "[sim:failed=ModelUnavailable]", "")
    ]

    # When they have run (the rejected key pauses the fleet: cancel it once it was tried)
    wait_for(others, timeout_s=120)
    unauthorised = jobs.enqueue({"prompt": prompt("[sim:http_401]")})
    _wait_for_line(
        log, lambda e: e.get("event") == "submit_failed" and e.get("job_id") == str(unauthorised)
    )
    _wait_for_line(log, lambda e: e.get("event") == "submissions_paused")
    jobs.cancel(unauthorised)
    stop_process(worker.proc)  # its shutdown lines too

    # Then every line is a JSON object with the stable keys, and the key is nowhere
    content = log.read_text()
    assert API_KEY not in content
    assert API_KEY[3:] not in content  # not even without its prefix
    entries = [json.loads(line) for line in content.splitlines()]
    assert all({"ts", "level", "logger", "event"} <= set(e) for e in entries)
    submitted = [e for e in entries if e["event"] == "submitted"]
    assert submitted and all({"job_id", "prediction_id", "attempt"} <= set(e) for e in submitted)
    failures = {e["error"] for e in entries if e["event"] == "submit_failed"}
    assert {"provider_auth", "provider_server_error"} <= failures
    assert any(e["level"] == "debug" for e in entries)  # DEBUG really was on
    assert any("Warm shutdown" in e["event"] for e in entries)  # Celery's own print, as JSON


def _wait_for_line(
    log: Path, wanted: Callable[[dict[str, Any]], bool], timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if wanted(json.loads(line)):
                return
        time.sleep(0.3)
    pytest.fail(f"no such log line in {log}")
