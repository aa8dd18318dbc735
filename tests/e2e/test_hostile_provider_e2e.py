"""A malicious provider against the real stack: a real worker and beat, Postgres, Redis, the S3
server and the API, with :class:`tests.hostile.HostileProvider` on 127.0.0.1 answering.

Each class of attack ends the job in a named state with its reason, fetches nothing it must
not, stores nothing it must not, and retries nothing that cannot succeed.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from sqlalchemy import select

from models import JobEvent, JobImage
from tests import harness
from tests.conftest import BUCKET
from tests.hostile import HostileProvider, InternalService
from tests.producers import AUTH, configure, running_api
from tests.waiting import wait_for
from worker.db.engine import session_scope
from worker.service import jobs

pytestmark = pytest.mark.e2e

#: A provider key that does not look like one (no ``sk-``): scrubbed all the same.
KEY = "gpk_live_7d1f0c2b9a8e4d6f5a3c"
DEADLINE_S = 3


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileProvider]:
    with HostileProvider() as provider:
        yield provider


@pytest.fixture(scope="module")
def internal() -> Iterator[InternalService]:
    with InternalService() as service:
        yield service


@pytest.fixture(scope="module")
def fleet(
    service_env: dict[str, str],
    hostile: HostileProvider,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    """A worker and a beat whose provider is the hostile one (its own host trusted, as a
    deployment would trust the simulator's)."""
    tmp = tmp_path_factory.mktemp("hostile")
    env = {
        **service_env,
        **harness.provider_env(hostile.url),
        "GPTPROTO_API_KEY": KEY,
        "IMAGEGEN_DOWNLOAD_DEADLINE_S": str(DEADLINE_S),
        "IMAGEGEN_MAX_TRANSFER_ATTEMPTS": "2",
        "IMAGEGEN_RETRY_BASE_S": "0.2",
        "IMAGEGEN_RETRY_MAX_S": "0.5",
        "IMAGEGEN_DATA_DIR": str(tmp),
    }
    worker = harness.start_worker(env, tmp / "worker.log")
    beat = harness.start_imagegen(env, tmp / "beat.log", "beat")
    yield tmp, [worker, beat]
    for proc in (beat, worker):
        harness.stop_process(proc)


def run(prompt: str, timeout_s: float = 90) -> dict[str, Any]:
    job_id = jobs.enqueue({"prompt": prompt, "seed": 1})
    return wait_for([job_id], timeout_s=timeout_s)[job_id]


def stored_keys(job_id: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=os.environ["IMAGEGEN_S3_ENDPOINT_URL"])
    listing = s3.list_objects_v2(Bucket=BUCKET)
    return [item["Key"] for item in listing.get("Contents", []) if job_id in item["Key"]]


def images_of(job_id: str) -> list[JobImage]:
    with session_scope() as session:
        return list(session.scalars(select(JobImage).where(JobImage.job_id == uuid.UUID(job_id))))


def test_output_urls_that_point_inside_are_refused_at_once(
    configured: None, fleet: Any, hostile: HostileProvider, internal: InternalService
) -> None:
    # Given a provider answering output URLs aimed at an internal service, Redis, loopback
    # names and numeric spellings of 127.0.0.1, and a redirect from its own host to loopback
    port = internal.port
    aimed = {
        "internal": f"{internal.url}/secret.png",
        "redis": "http://127.0.0.1:6379/",
        "localhost": f"https://localhost:{port}/x.png",
        "integer": f"https://2130706433:{port}/x.png",
        "hex": f"https://0x7f000001:{port}/x.png",
        "mapped": f"https://[::ffff:127.0.0.1]:{port}/x.png",
        "redirect": hostile.out("redirect", to=f"{internal.url}/x.png"),
        "redirect-https": hostile.out("redirect", to=f"https://127.1:{port}/x.png"),
    }
    prompts = {name: hostile.script(outputs=[url]) for name, url in aimed.items()}
    ids = {name: jobs.enqueue({"prompt": prompt, "seed": 1}) for name, prompt in prompts.items()}

    # When the worker takes them to the end
    views = wait_for(ids.values(), timeout_s=120)

    # Then every one failed output_refused on its first attempt, nothing was fetched inside,
    # nothing stored, and each redirect was requested exactly once
    for name, job_id in ids.items():
        view = views[job_id]
        assert (view["status"], view["error_code"]) == ("failed", "output_refused"), (name, view)
        assert view["transfer_attempts"] == 1, (name, view)
        assert not images_of(str(job_id)) and not stored_keys(str(job_id)), name
    assert internal.requests == 0
    assert hostile.hits("redirect") == 2


def test_a_download_that_drips_is_cut_at_its_deadline(
    configured: None, fleet: Any, hostile: HostileProvider
) -> None:
    # Given an output that sends one byte every half second (a 60 s per-read timeout never
    # fires on it)
    prompt = hostile.script(outputs=[hostile.out("drip")])

    # When the worker copies it
    view = run(prompt)

    # Then each attempt ended at the overall deadline, counted as a transfer attempt, and the
    # job failed once its attempts were spent
    assert (view["status"], view["error_code"]) == ("failed", "output_unavailable"), view
    assert f"took longer than {DEADLINE_S} s" in view["error_message"]
    assert view["transfer_attempts"] == 2 and hostile.hits("drip") == 2


def test_a_decompression_bomb_is_refused_without_a_retry(
    configured: None, fleet: Any, hostile: HostileProvider
) -> None:
    # Given a small PNG declaring 20000x20000 pixels
    prompt = hostile.script(outputs=[hostile.out("bomb.png")])

    # When the worker copies it
    view = run(prompt)

    # Then the job failed at once, said why, and stored nothing
    assert (view["status"], view["error_code"]) == ("failed", "output_refused"), view
    assert "20000x20000" in view["error_message"] and view["transfer_attempts"] == 1
    assert hostile.hits("bomb.png") == 1 and not stored_keys(view["id"])


def test_hundreds_of_outputs_are_cut_to_the_cap(
    configured: None, fleet: Any, hostile: HostileProvider
) -> None:
    # Given a prediction answering 300 output URLs
    prompt = hostile.script(outputs=[hostile.out("flood.png", n=str(n)) for n in range(300)])

    # When the worker takes it to the end
    view = run(prompt)

    # Then the first four were copied and the rest refused, recorded on the job's event
    assert view["status"] == "succeeded", view
    assert len(images_of(view["id"])) == 4 and len(stored_keys(view["id"])) == 4
    assert hostile.hits("flood.png") == 4
    with session_scope() as session:
        generated = session.scalars(
            select(JobEvent).where(
                JobEvent.job_id == uuid.UUID(view["id"]), JobEvent.event == "generated"
            )
        ).one()
    assert generated.detail == {
        "outputs": 4,
        "refused_outputs": 296,
        "reason": "over IMAGEGEN_MAX_OUTPUTS",
    }


def test_the_api_key_is_scrubbed_from_provider_text_whatever_its_shape(
    configured: None,
    fleet: tuple[Path, list[subprocess.Popen[bytes]]],
    hostile: HostileProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a provider whose failure text echoes the key it was sent (a key without sk-)
    prompt = hostile.script(error="account {key} may not use viduq2 (key {key})")

    # When the job fails with that text
    view = run(prompt)

    # Then the row, the API's answer and the worker's log hold the message without the key
    assert (view["status"], view["error_code"]) == ("failed", "provider_failed"), view
    assert KEY not in view["error_message"] and "***" in view["error_message"]
    configure(monkeypatch)
    with running_api() as url:
        answer = httpx.get(f"{url}/v1/jobs/{view['id']}", headers=AUTH, timeout=30)
    assert answer.status_code == 200 and "may not use viduq2" in answer.text
    assert KEY not in answer.text
    tmp, _ = fleet
    assert KEY not in (tmp / "worker.log").read_text()
