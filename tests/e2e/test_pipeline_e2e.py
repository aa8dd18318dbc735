"""End to end: a real `imagegen worker` process takes jobs from enqueue to `succeeded`.

Real Postgres, real Redis as the broker, moto's S3 server over HTTP and the simulator over HTTP.
Every stored object is checked against its image row and against what the simulator served.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import time
import uuid

import boto3
import httpx
import pytest
from PIL import Image

from tests.conftest import BUCKET
from tests.harness import run_imagegen
from tests.waiting import wait_for
from worker.service import jobs

pytestmark = pytest.mark.e2e

RATIOS = ["1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "2:3", "3:2", "auto"]
RESOLUTIONS = ["1080p", "2K", "4K", "2k"]


cli = run_imagegen  # the installed command, as an operator runs it


def test_twenty_mixed_jobs_reach_succeeded_with_verified_objects(
    configured, module_worker, service_env, simulator_url
) -> None:
    # Given a running worker and 20 requests across every ratio and resolution
    run = uuid.uuid4().hex[:8]
    mix = list(itertools.islice(itertools.cycle(itertools.product(RATIOS, RESOLUTIONS)), 20))
    requests = [
        {"prompt": f"e2e {run} #{n}", "aspect_ratio": ratio, "resolution": res, "seed": 100 + n}
        for n, (ratio, res) in enumerate(mix)
    ]

    # When the first three go through the CLI and the rest through the Python API
    ids = []
    for request in requests[:3]:
        done = cli(
            service_env,
            "enqueue",
            request["prompt"],
            "--aspect-ratio",
            request["aspect_ratio"],
            "--resolution",
            request["resolution"],
            "--seed",
            str(request["seed"]),
            "--json",
        )
        assert done.returncode == 0, done.stderr
        ids.append(uuid.UUID(json.loads(done.stdout)["id"]))
    ids += [jobs.enqueue(request) for request in requests[3:]]
    started = time.monotonic()
    views = wait_for(ids)
    elapsed = time.monotonic() - started

    # Then every job succeeded, once, with objects that match rows and the simulator's bytes
    assert {v["status"] for v in views.values()} == {"succeeded"}, {
        str(k): (v["status"], v["error_code"], v["error_message"]) for k, v in views.items()
    }
    s3 = boto3.client("s3", endpoint_url=service_env["IMAGEGEN_S3_ENDPOINT_URL"])
    stats = httpx.get(f"{simulator_url}/_sim/stats").json()
    for request, job_id in zip(requests, ids, strict=True):
        view = views[job_id]
        assert len(view["images"]) == 1
        _check_image(s3, view, request, simulator_url)
        assert stats["submissions_per_prompt"][request["prompt"]] == 1
    print(f"\n20 jobs end to end in {elapsed:.1f} s")


def _check_image(s3, view: dict, request: dict, simulator_url: str) -> None:
    from simulator.images import image_size

    image = view["images"][0]
    body = s3.get_object(Bucket=image["bucket"], Key=image["key"])["Body"].read()
    assert image["bucket"] == BUCKET
    assert image["key"].startswith("images/") and image["key"].endswith(f"{view['id']}/0.png")
    assert len(body) == image["bytes"]
    assert hashlib.sha256(body).hexdigest() == image["sha256"]
    with Image.open(io.BytesIO(body)) as picture:
        assert picture.format == "PNG"
        assert picture.size == (image["width"], image["height"])
    assert (image["width"], image["height"]) == image_size(
        request["aspect_ratio"], request["resolution"]
    )
    record = httpx.get(f"{simulator_url}/_sim/predictions/{view['prediction_id']}").json()
    served = httpx.get(record["outputs"][0]).content
    assert hashlib.sha256(served).hexdigest() == image["sha256"]


def test_status_cli_reports_the_stored_images(configured, module_worker, service_env) -> None:
    # Given a job that went through
    job_id = jobs.enqueue(
        {"prompt": f"status {uuid.uuid4().hex}", "resolution": "2K", "aspect_ratio": "16:9"}
    )
    wait_for([job_id])
    # When a script asks for its status
    done = cli(service_env, "status", str(job_id), "--json")
    # Then it gets the documented fields
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["id"] == str(job_id) and view["status"] == "succeeded"
    assert view["error_code"] is None and view["error_message"] is None
    assert len(view["prediction_id"]) == 32
    image = view["images"][0]
    assert set(image) >= {"bucket", "key", "bytes", "sha256", "width", "height", "content_type"}
    assert (image["width"], image["height"], image["content_type"]) == (2560, 1440, "image/png")
    assert [e["to"] for e in view["events"] if e["to"]] == [
        "queued",
        "submitting",
        "running",
        "transferring",
        "succeeded",
    ]
