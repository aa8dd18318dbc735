"""End to end through the client library, as another service uses it: a real `imagegen api`
process, a real `imagegen worker` and beat, the simulator, Postgres, Redis and S3. Jobs and
batches are created, waited for, their images downloaded and checked, their links refreshed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from imagegen_client import AsyncClient, Batch, ChecksumMismatch, Client, Job

from tests.conftest import ROOT
from tests.producers import PRODUCER_ENV, TOKEN, api_process, configure

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api_url(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("client-e2e-api") / "api.log"
    with api_process({**service_env, **PRODUCER_ENV}, log) as url:
        yield url


@pytest.fixture
def client(
    configured, monkeypatch: pytest.MonkeyPatch, api_url: str, module_worker: object
) -> Iterator[Client]:
    configure(monkeypatch)
    with Client(api_url, TOKEN) as client:
        yield client


def test_a_job_from_create_to_a_checked_download(client: Client, tmp_path: Path) -> None:
    # Given a job created through the client
    job = client.jobs.create("a lighthouse at dawn", resolution="2K", aspect_ratio="16:9")
    # When it is waited for
    done = client.jobs.wait(job.id, timeout=120, interval_s=0.3)
    # Then it succeeded, its image has a link valid for IMAGEGEN_PRESIGN_EXPIRY_S (1 h)
    assert done.succeeded and done.error is None, done
    [image] = done.images
    assert (image.width, image.height, image.job_id) == (2560, 1440, job.id)
    assert image.expires_at is not None
    lifetime = image.expires_at - datetime.now(UTC)
    assert timedelta(minutes=58) < lifetime <= timedelta(hours=1)
    # And the download streams it and checks its sha256
    path = client.download(image, tmp_path / "out" / "lighthouse.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and hashlib.sha256(data).hexdigest() == image.sha256
    # A link past its expiry is refreshed through the job before use
    expired = dataclasses.replace(
        image, url="http://127.0.0.1:9/expired", expires_at=datetime.now(UTC) - timedelta(1)
    )
    assert client.download(expired, tmp_path / "again.png").read_bytes() == data
    # A checksum that does not match is an error, and leaves nothing behind
    wrong = dataclasses.replace(image, sha256="0" * 64)
    with pytest.raises(ChecksumMismatch):
        client.download(wrong, tmp_path / "wrong.png")
    assert not (tmp_path / "wrong.png").exists()
    assert not list(tmp_path.glob("*.part"))


def test_a_batch_waited_for_then_its_manifest(client: Client, tmp_path: Path) -> None:
    # Given a batch of five jobs
    items = [{"prompt": f"a ceramic mug, view {n}", "ref": f"sku-{n}"} for n in range(5)]
    batch = client.batches.create(items, name="mugs")
    # When it is waited for
    seen: list[Batch] = []
    done = client.batches.wait(batch.id, timeout=180, interval_s=0.5, on_progress=seen.append)
    # Then every job succeeded, and progress was reported on the way
    assert done.completed and done.counts["succeeded"] == 5 and done.progress == 1.0
    assert seen[-1] == done and all(b.id == batch.id for b in seen)
    # And the manifest lists them in order with their objects; each downloads and checks
    lines = list(client.batches.manifest(batch.id))
    assert [(line.ref, line.status) for line in lines] == [
        (f"sku-{n}", "succeeded") for n in range(5)
    ]
    for line in lines:
        [image] = client.jobs.get(line.job_id).images
        assert image.sha256 == line.images[0].sha256
        client.download(image, tmp_path / f"{line.ref}.png")
    assert len(list(tmp_path.glob("*.png"))) == 5


def test_the_async_client_end_to_end(client: Client, api_url: str, tmp_path: Path) -> None:
    async def scenario() -> tuple[Job, Path]:
        async with AsyncClient(api_url, TOKEN) as aclient:
            job = await aclient.jobs.create("an async lighthouse")
            done = await aclient.jobs.wait(job.id, timeout=120, interval_s=0.3)
            return done, await aclient.download(done.images[0], tmp_path / "async.png")

    done, path = asyncio.run(scenario())
    assert done.succeeded
    assert hashlib.sha256(path.read_bytes()).hexdigest() == done.images[0].sha256


def readme_block(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    return next(block for block in blocks if marker in block)


def test_the_readme_client_example_runs_as_written(
    client: Client, api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the environment the README's example reads, in an empty folder
    monkeypatch.setenv("IMAGEGEN_URL", api_url)
    monkeypatch.setenv("IMAGEGEN_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    # When the example of "From another service" runs as it is written
    example = readme_block("from imagegen_client import Client\n")
    exec(compile(example, "README.md", "exec"), {})
    # Then the fox was generated, downloaded and checked
    assert (tmp_path / "fox-0.png").read_bytes().startswith(b"\x89PNG")
    [job] = client.jobs.list(metadata={"order": "1234"})
    assert job.succeeded and job.images[0].width == 2560
