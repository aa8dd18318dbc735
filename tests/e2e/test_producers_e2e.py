"""End to end for producers: a real `imagegen worker` process, the simulator (zero latency),
real Postgres, Redis and S3.

- Webhooks: a job and a batch submitted over the HTTP API with the client library; a local
  HTTP server receives their signed events (one of them after a failed first attempt) and
  checks them with the README's recipe; the batch's completion event arrives exactly once.
- A 200-line JSONL batch through `imagegen batch submit --wait`, its manifest and an export.
  (The 10,000-line run is the same with `IMAGEGEN_E2E_BATCH_LINES=10000`; see README.)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imagegen_client import Client, Job, verify_webhook

from tests.conftest import BIN
from tests.harness import provider_env, start_simulator, start_worker, stop_process
from tests.producers import (
    PRODUCER_ENV,
    TOKEN,
    WEBHOOK_SECRET,
    WebhookReceiver,
    configure,
    readme_verifier,
    running_api,
)

pytestmark = pytest.mark.e2e
LINES = int(os.environ.get("IMAGEGEN_E2E_BATCH_LINES", "200"))
RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "2:3", "3:2"]


@pytest.fixture(scope="module")
def fast_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A simulator of its own with zero generation time."""
    log = tmp_path_factory.mktemp("fast-sim") / "simulator.log"
    proc, url = start_simulator(log, "--latency", "*=0")
    yield url
    stop_process(proc)


@pytest.fixture
def env(
    configured, monkeypatch: pytest.MonkeyPatch, service_env: dict[str, str], fast_simulator: str
) -> dict[str, str]:
    """The deployment's environment, pointed at the fast simulator, webhooks on 127.0.0.1."""
    configure(monkeypatch, GPTPROTO_BASE_URL=fast_simulator)
    return {**service_env, **PRODUCER_ENV, **provider_env(fast_simulator)}


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_worker(env, tmp_path / "worker.log", concurrency=16)
    yield proc
    stop_process(proc)


def imagegen(
    env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "imagegen"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout_s,
        check=False,
    )


def test_signed_webhooks_for_a_job_and_a_batch(
    env: dict[str, str], worker: object, tmp_path: Path
) -> None:
    # Given a receiver whose first answer is a 500, and the API
    with (
        WebhookReceiver(replies=[500]) as receiver,
        running_api() as base_url,
        Client(base_url, TOKEN) as api,
    ):
        # When a job and a 3-job batch with callback URLs are submitted
        job = api.jobs.create("a webhook fox", resolution="2K", callback_url=f"{receiver.url}/job")
        batch = api.batches.create(
            [{"prompt": f"batch fox {n}", "ref": f"fox-{n}"} for n in range(3)],
            callback_url=f"{receiver.url}/batch",
            name="foxes",
        )
        # Then three signed requests arrive: one failed attempt, then both events
        requests = receiver.take(3, timeout_s=120)
        time.sleep(2)
        assert receiver.received.empty(), "an event was delivered more than once"
        # checked with the README's recipe and the client's (the same function)
        verify = readme_verifier()
        assert all(verify(WEBHOOK_SECRET, r.headers, r.body) for r in requests)
        assert all(verify_webhook(WEBHOOK_SECRET, r.headers, r.body) for r in requests)
        by_path = {r.path: r.event() for r in requests}
        job_event, batch_event = by_path["/job"], by_path["/batch"]
        assert job_event["type"] == "job.succeeded"
        assert job_event["data"]["job"]["id"] == job.id
        # the event's job reads like the client's: its image, with a link and its expiry
        [image] = Job.from_api(job_event["data"]["job"]).images
        assert (image.width, image.height) == (1920, 1920)  # 2K at 1:1
        assert image.expires_at is not None and image.expires_at > datetime.now(UTC)
        api.download(image, tmp_path / "fox.png")  # checks the sha256
        # the deliveries and their attempts through the client; one sent again, same event id
        [delivery] = api.webhooks.deliveries(job_id=job.id)
        assert (delivery.event, delivery.status, delivery.attempt_count) == (
            "job.succeeded",
            "delivered",
            len(delivery.attempts),
        )
        assert api.webhooks.redeliver(delivery.id).id == delivery.id
        [again] = receiver.take(1, timeout_s=60)
        assert again.headers["X-Imagegen-Delivery"] == delivery.id
        assert verify_webhook(WEBHOOK_SECRET, again.headers, again.body)
    assert batch_event["type"] == "batch.completed"
    completed = batch_event["data"]["batch"]
    assert (completed["id"], completed["counts"]["succeeded"]) == (batch.id, 3)
    assert completed["completed"] is True
    assert len({r.headers["X-Imagegen-Delivery"] for r in requests}) == 2  # retry: same id


def test_cli_batch_submit_wait_manifest_and_export(
    env: dict[str, str], worker: object, tmp_path: Path
) -> None:
    # Given a JSONL file of LINES requests
    source = tmp_path / "nightly.jsonl"
    with source.open("w") as out:
        for n in range(LINES):
            out.write(
                json.dumps(
                    {
                        "ref": f"line-{n}",
                        "prompt": f"nightly picture {n}",
                        "aspect_ratio": RATIOS[n % len(RATIOS)],
                        "seed": n + 1,
                    }
                )
                + "\n"
            )
    # When it is submitted and waited for
    started = time.monotonic()
    done = imagegen(
        env, "batch", "submit", str(source), "--wait", "--json", timeout_s=max(600, LINES * 0.5)
    )
    elapsed = time.monotonic() - started
    # Then every job succeeded, and the manifest has one line per job with its objects
    assert done.returncode == 0, done.stderr[-2000:]
    view = json.loads(done.stdout)
    assert (view["total"], view["counts"]["succeeded"], view["completed"]) == (LINES, LINES, True)
    print(f"\n{LINES} jobs through `batch submit --wait` in {elapsed:.1f} s")
    listed = imagegen(env, "batch", "manifest", view["id"])
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(lines) == LINES
    assert [line["ref"] for line in lines] == [f"line-{n}" for n in range(LINES)]
    assert all(line["status"] == "succeeded" and len(line["images"]) == 1 for line in lines)
    # And the export holds every image, matching its checksum, with the manifest beside
    exported = imagegen(
        env, "export", "--batch", view["id"], str(tmp_path / "out"), timeout_s=max(600, LINES * 0.2)
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    _check_export(tmp_path / "out", lines)


def _check_export(folder: Path, lines: list[dict]) -> None:
    manifest = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [line["job_id"] for line in manifest] == [line["job_id"] for line in lines]
    files = sorted((folder / "images").iterdir())
    assert len(files) == len(lines)
    for line in manifest[:: max(1, len(manifest) // 25)]:
        [name] = line["files"]
        data = (folder / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == line["images"][0]["sha256"]
        assert data.startswith(b"\x89PNG")
