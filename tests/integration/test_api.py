"""The HTTP API over real HTTP (uvicorn in a thread) against real Postgres and S3."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import httpx
import pytest
from PIL import Image

from tests.conftest import BUCKET
from tests.producers import AUTH, OTHER_TOKEN, TOKEN, configure, row_counts
from worker.db.engine import session_scope
from worker.store import jobs as job_store
from worker.store import steps

pytestmark = pytest.mark.integration


@pytest.fixture
def api(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[httpx.Client]:
    configure(monkeypatch)
    with httpx.Client(base_url=api_url, headers=AUTH, timeout=60) as client:
        yield client


def jsonl(*objects: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objects)


# --- authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x", TOKEN]
)
def test_v1_needs_a_valid_bearer_token(api: httpx.Client, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    before = row_counts()
    for method, path in [
        ("POST", "/v1/jobs"),
        ("GET", f"/v1/jobs/{uuid.uuid4()}"),
        ("POST", "/v1/batches"),
        ("GET", f"/v1/batches/{uuid.uuid4()}"),
    ]:
        reply = httpx.request(
            method, str(api.base_url) + path, headers=headers, json={"prompt": "a cat"}
        )
        assert reply.status_code == 401, (path, reply.text)
        assert reply.json()["code"] == "unauthorized"
        assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert row_counts() == before


def test_both_configured_tokens_work_and_ops_endpoints_need_none(api: httpx.Client) -> None:
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    assert (
        httpx.post(f"{api.base_url}/v1/jobs", headers=other, json={"prompt": "x"}).status_code
        == 202
    )
    assert httpx.get(f"{api.base_url}/healthz").status_code == 200
    assert httpx.get(f"{api.base_url}/openapi.json").status_code == 200
    docs = httpx.get(f"{api.base_url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # offline: every script and style of the page is served by the app itself
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/docs/static/") for a in assets), assets
    for asset in assets:
        assert httpx.get(f"{api.base_url}{asset}").status_code == 200, asset


# --- jobs ---------------------------------------------------------------------------------------


def test_post_job_then_get_and_cancel(api: httpx.Client) -> None:
    created = api.post(
        "/v1/jobs",
        json={
            "prompt": "a lighthouse",
            "resolution": "4k",
            "aspect_ratio": "16:9",
            "seed": 9,
            "ref": "r-1",
        },
    )
    assert created.status_code == 202, created.text
    job = created.json()
    assert created.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["ref"] == "r-1"
    assert job["request"] == {
        "prompt": "a lighthouse",
        "resolution": "4K",
        "aspect_ratio": "16:9",
        "seed": 9,
    }
    assert api.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    cancelled = api.post(f"/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["code"] == "cancelled"
    again = api.post(f"/v1/jobs/{job['id']}/cancel")  # already ended: left as it is
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_idempotency_key_same_body_same_job_other_body_conflict(api: httpx.Client) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    body = {"prompt": "one fox", "callback_url": "https://hooks.example.com/x"}
    first = api.post("/v1/jobs", json=body, headers=key)
    second = api.post("/v1/jobs", json=body, headers=key)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    before = row_counts()
    conflict = api.post("/v1/jobs", json={**body, "prompt": "two foxes"}, headers=key)
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "idempotency_conflict"
    assert api.post("/v1/jobs", json={**body, "callback_url": None}, headers=key).status_code == 409
    assert row_counts() == before


def test_get_job_has_images_with_presigned_urls_and_timings(
    api: httpx.Client, service_env: dict[str, str]
) -> None:
    # Given a succeeded job with one stored image (rows and object written as a worker would)
    job_id = uuid.UUID(api.post("/v1/jobs", json={"prompt": "p"}).json()["id"])
    png = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(png, "PNG")
    key = f"images/test/{job_id}/0.png"
    boto3.client("s3", endpoint_url=service_env["IMAGEGEN_S3_ENDPOINT_URL"]).put_object(
        Bucket=BUCKET, Key=key, Body=png.getvalue()
    )
    _succeed(job_id, key, png.getvalue())
    # When it is read over the API
    job = api.get(f"/v1/jobs/{job_id}").json()
    # Then the image has a working download link, and the timings are filled
    assert job["status"] == "succeeded" and job["error"] is None
    image = job["images"][0]
    assert (image["width"], image["height"], image["key"]) == (8, 6, key)
    assert httpx.get(image["url"]).content == png.getvalue()
    assert job["timings"]["total_s"] is not None and job["attempts"] == 1


def _succeed(job_id: uuid.UUID, key: str, data: bytes) -> None:
    import hashlib

    from worker.core.states import JobStatus

    with session_scope() as session:
        claim = steps.claim_for_submit(session, job_id=job_id, lease_s=60)
        assert claim is not None
        steps.mark_running(
            session,
            claim=claim,
            prediction_id="p1",
            provider_status="created",
            next_poll_at=datetime.now(UTC),
        )
        steps.mark_generated(
            session,
            job_id=job_id,
            provider_status="completed",
            outputs=["https://cdn.example.com/x.png"],
            nsfw=[False],
        )
        transfer = steps.claim_for_transfer(session, job_id=job_id, lease_s=60)
        assert transfer is not None
        job_store.record_image(
            session,
            values={
                "job_id": job_id,
                "idx": 0,
                "bucket": BUCKET,
                "key": key,
                "content_type": "image/png",
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "width": 8,
                "height": 6,
                "source_url": "https://cdn.example.com/x.png",
                "nsfw": False,
            },
        )
        assert steps.mark_succeeded(session, claim=transfer)
        assert job_store.get_job(session, job_id).status == JobStatus.SUCCEEDED  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["/v1/jobs/{id}", "/v1/batches/{id}", "/v1/batches/{id}/manifest"])
def test_unknown_ids_are_404(api: httpx.Client, path: str) -> None:
    reply = api.get(path.format(id=uuid.uuid4()))
    assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    assert api.post(f"/v1/jobs/{uuid.uuid4()}/cancel").status_code == 404


# --- batches ------------------------------------------------------------------------------------


def test_jsonl_batch_status_and_manifest(api: httpx.Client) -> None:
    body = jsonl(
        {"prompt": "a", "ref": "first"},
        {"prompt": "b", "resolution": "2k"},
        {"prompt": "c", "ref": "third", "seed": 3},
    )
    reply = api.post(
        "/v1/batches?name=nightly&deadline_s=600",
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert reply.status_code == 202, reply.text
    batch = reply.json()
    assert (batch["name"], batch["total"], batch["counts"]["queued"]) == ("nightly", 3, 3)
    assert (batch["done"], batch["progress"], batch["completed"]) == (0, 0.0, False)
    manifest = api.get(f"/v1/batches/{batch['id']}/manifest")
    assert manifest.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in manifest.text.splitlines()]
    assert [(line["index"], line["ref"], line["status"]) for line in lines] == [
        (0, "first", "queued"),
        (1, None, "queued"),
        (2, "third", "queued"),
    ]
    job = api.get(f"/v1/jobs/{lines[1]['job_id']}").json()
    assert (job["priority"], job["batch_id"]) == ("batch", batch["id"])
    assert job["request"]["resolution"] == "2K"


def test_json_list_and_envelope_batches(api: httpx.Client) -> None:
    listed = api.post("/v1/batches", json=[{"prompt": "a"}, {"prompt": "b"}])
    assert listed.status_code == 202 and listed.json()["total"] == 2
    envelope = api.post(
        "/v1/batches",
        json={
            "jobs": [{"prompt": "x", "ref": "1"}],
            "name": "env",
            "callback_url": "https://hooks.example.com/batch",
        },
    )
    assert envelope.status_code == 202, envelope.text
    assert envelope.json()["name"] == "env"
    assert envelope.json()["callback_url"] == "https://hooks.example.com/batch"


def test_batch_idempotency(api: httpx.Client) -> None:
    key = {"Idempotency-Key": f"nightly-{uuid.uuid4()}", "Content-Type": "application/x-ndjson"}
    body = jsonl({"prompt": "a"}, {"prompt": "b"})
    first = api.post("/v1/batches", content=body, headers=key)
    second = api.post("/v1/batches", content=body, headers=key)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    before = row_counts()
    other = api.post("/v1/batches", content=jsonl({"prompt": "c"}), headers=key)
    assert other.status_code == 409
    assert row_counts() == before


def test_an_idempotency_conflict_does_not_reveal_whose_job_or_batch_holds_the_key(
    api: httpx.Client,
) -> None:
    # Given a job and a batch another caller created with their idempotency keys
    job_key, batch_key = f"k-{uuid.uuid4()}", f"k-{uuid.uuid4()}"
    job = api.post("/v1/jobs", json={"prompt": "theirs"}, headers={"Idempotency-Key": job_key})
    batch = api.post(
        "/v1/batches", json=[{"prompt": "theirs"}], headers={"Idempotency-Key": batch_key}
    )
    # When someone else sends other requests with the same keys
    job_conflict = api.post(
        "/v1/jobs", json={"prompt": "mine"}, headers={"Idempotency-Key": job_key}
    )
    batch_conflict = api.post(
        "/v1/batches", json=[{"prompt": "mine"}], headers={"Idempotency-Key": batch_key}
    )
    # Then each is told the key conflicts, and never the id of what it names
    assert (job_conflict.status_code, batch_conflict.status_code) == (409, 409)
    assert job_conflict.json()["message"] == (
        "this idempotency key was already used with a different request"
    )
    assert batch_conflict.json()["message"] == (
        "this idempotency key was already used with a different batch"
    )
    assert job.json()["id"] not in job_conflict.text
    assert batch.json()["id"] not in batch_conflict.text


def test_bad_batch_lists_every_bad_line_and_writes_nothing(api: httpx.Client) -> None:
    before = row_counts()
    body = jsonl({"prompt": "fine"}, {"prompt": ""}, {"prompt": "x", "seed": -1}) + b"oops\n"
    reply = api.post("/v1/batches", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert reply.status_code == 422
    errors = reply.json()["errors"]
    assert [(e["line"], e["field"]) for e in errors] == [(2, "prompt"), (3, "seed"), (4, "json")]
    assert row_counts() == before


def test_too_large_bodies_are_413(api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, IMAGEGEN_API_MAX_BATCH_BYTES="1000")
    before = row_counts()
    big = jsonl(*[{"prompt": "p" * 100} for _ in range(20)])
    reply = api.post("/v1/batches", content=big, headers={"Content-Type": "application/x-ndjson"})
    assert reply.status_code == 413 and reply.json()["errors"][0]["field"] == "body"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        yield from (big[i : i + 100] for i in range(0, len(big), 100))

    streamed = api.post(
        "/v1/batches", content=chunks(), headers={"Content-Type": "application/x-ndjson"}
    )
    assert streamed.status_code == 413
    assert row_counts() == before


def test_openapi_documents_every_endpoint(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    assert {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/batches",
        "/v1/batches/{batch_id}",
        "/v1/batches/{batch_id}/manifest",
    } <= set(schema["paths"])
    batch_body = schema["paths"]["/v1/batches"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(batch_body)
    assert {"BatchCreate", "BatchLine", "JobCreate", "JobOut", "BatchOut", "ErrorBody"} <= set(
        schema["components"]["schemas"]
    )
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# --- `imagegen api` -----------------------------------------------------------------------------


def test_imagegen_api_serves_with_tokens_and_refuses_to_start_without(
    configured, service_env: dict[str, str], tmp_path
) -> None:
    import os
    import subprocess

    from tests.conftest import BIN
    from tests.harness import free_port, start_imagegen, stop_process, wait_http

    refused = subprocess.run(
        [str(BIN / "imagegen"), "api"],
        capture_output=True,
        text=True,
        env={**os.environ, **service_env, "IMAGEGEN_API_TOKENS": " , "},
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2 and "IMAGEGEN_API_TOKENS" in refused.stderr
    short = "short-token-0123456789abcdef"  # 28 characters
    refused = subprocess.run(
        [str(BIN / "imagegen"), "api"],
        capture_output=True,
        text=True,
        env={**os.environ, **service_env, "IMAGEGEN_API_TOKENS": f"{TOKEN},{short}"},
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert (
        "IMAGEGEN_API_TOKENS: each token must be at least 32 characters "
        "(too short: entry 2 of the comma-separated list)"
    ) in " ".join(refused.stderr.split())
    assert short not in refused.stderr and TOKEN not in refused.stderr
    port = free_port()
    proc = start_imagegen(
        {**service_env, "IMAGEGEN_API_TOKENS": TOKEN},
        tmp_path / "api.log",
        "api",
        "--port",
        str(port),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/jobs", headers=AUTH, json={"prompt": "served"}
        )
        assert reply.status_code == 202, reply.text
    finally:
        stop_process(proc)
    assert TOKEN not in (tmp_path / "api.log").read_text()
