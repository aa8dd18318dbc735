"""The dashboard's pages over real HTTP against real Postgres and S3: the overview, the batch
list and a batch's gallery (pagination, filters), a job page, thumbnails from S3 and from the
local folder of the embedded mode, the manifest download, unknown ids."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import httpx
import pytest
from PIL import Image

from tests.conftest import BUCKET
from tests.dashboard import Stored, finish, sign_in, stored
from tests.producers import AUTH, configure, running_api
from worker.core.settings import reset_settings
from worker.service import batches, jobs

pytestmark = pytest.mark.integration
_CARD = re.compile(r'<li class="card" data-job="([0-9a-f-]+)">')
_THUMB = re.compile(r'src="(/dashboard/thumbs/[^"]+)"')


@pytest.fixture
def client(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[httpx.Client]:
    configure(monkeypatch)
    with httpx.Client(base_url=api_url, timeout=30) as browser:
        assert sign_in(browser).status_code == 303
        yield browser


@pytest.fixture
def s3(service_env: dict[str, str]):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=service_env["IMAGEGEN_S3_ENDPOINT_URL"])


def _put(s3, picture: Stored) -> Stored:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=picture.bucket, Key=picture.key, Body=picture.data)
    return picture


def _batch(count: int, name: str = "nightly") -> batches.BatchReceipt:
    items = [{"prompt": f"product {n}", "ref": f"sku-{n}"} for n in range(count)]
    return batches.enqueue_batch(items, name=name, dispatch=False)


# --- the overview -------------------------------------------------------------------------------


def test_overview_counts_states_failures_throughput_and_the_queue(client: httpx.Client) -> None:
    receipt = _batch(6)
    now = datetime.now(UTC)
    finish(receipt.job_ids[0], "succeeded", at=now - timedelta(minutes=3))
    finish(receipt.job_ids[1], "failed", error_code="content_policy")
    finish(receipt.job_ids[2], "failed", error_code="content_policy")
    finish(
        receipt.job_ids[3], "failed", error_code="provider_failed", at=now - timedelta(hours=30)
    )  # outside the 24-hour window
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for status, count in [("queued", 2), ("running", 0), ("succeeded", 1), ("failed", 2)]:
        assert f'data-count="{status}">{count}<' in page.text, status
    assert "<code>content_policy</code>" in page.text
    assert "<code>provider_failed</code>" not in page.text
    assert "3</strong> jobs finished" in page.text  # the hour's chart: 1 succeeded, 2 failed
    assert "Oldest queued job" in page.text and 'data-fleet-paused="no"' in page.text
    fragment = client.get("/dashboard/fragments/overview")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'data-count="queued">2<' in fragment.text


def test_static_files_are_served_by_the_app(client: httpx.Client) -> None:
    css = client.get("/dashboard/static/dashboard.css")
    js = client.get("/dashboard/static/dashboard.js")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    page = client.get("/dashboard/").text
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing from elsewhere


# --- batches ------------------------------------------------------------------------------------


def test_batch_list_is_paginated_newest_first(client: httpx.Client) -> None:
    names = [f"run-{n:02d}" for n in range(30)]
    for name in names:
        batches.enqueue_batch([{"prompt": name}], name=name, dispatch=False)
    first = client.get("/dashboard/batches").text
    shown = re.findall(r">(run-\d\d)</a>", first)
    assert shown == list(reversed(names))[:25]
    cursor = re.search(r'href="/dashboard/batches\?cursor=([^"]+)" rel="next"', first)
    assert cursor
    second = client.get(f"/dashboard/batches?cursor={cursor.group(1)}").text
    assert re.findall(r">(run-\d\d)</a>", second) == list(reversed(names))[25:]
    assert 'rel="next"' not in second and 'href="/dashboard/batches">Newest' in second
    assert client.get("/dashboard/batches?cursor=garbage").status_code == 200


def test_gallery_pages_through_a_batch_and_filters_by_state_and_code(client: httpx.Client) -> None:
    receipt = _batch(60)
    ids = receipt.job_ids
    for n in range(50):
        finish(ids[n], "succeeded", image=stored(BUCKET, f"images/g/{ids[n]}/0.png", 64, 48))
    for n in range(50, 58):
        finish(ids[n], "failed", error_code="provider_failed" if n < 55 else "content_policy")
    base = f"/dashboard/batches/{receipt.batch_id}"
    page = client.get(base).text
    assert _CARD.findall(page) == [str(i) for i in ids[:48]]
    assert len(_THUMB.findall(page)) == 48 and 'loading="lazy"' in page
    assert f'href="{base}?after=47" rel="next"' in page and 'rel="prev"' not in page
    assert f'href="{base}/manifest"' in page
    second = client.get(f"{base}?after=47").text
    assert _CARD.findall(second) == [str(i) for i in ids[48:]]
    assert f'href="{base}?before=48" rel="prev"' in second and 'rel="next"' not in second
    back = client.get(f"{base}?before=48").text
    assert _CARD.findall(back) == [str(i) for i in ids[:48]]
    failed = client.get(f"{base}?status=failed").text
    assert _CARD.findall(failed) == [str(i) for i in ids[50:58]]
    coded = client.get(f"{base}?code=content_policy").text
    assert _CARD.findall(coded) == [str(i) for i in ids[55:58]]
    assert _CARD.findall(client.get(f"{base}?status=queued").text) == [str(i) for i in ids[58:]]
    assert len(_CARD.findall(client.get(f"{base}?status=bogus").text)) == 48  # ignored
    for status, count in [("succeeded", 50), ("failed", 8), ("queued", 2)]:
        assert f'data-count="{status}">{count}<' in page


def test_batch_summary_fragment_and_manifest_download(client: httpx.Client) -> None:
    receipt = _batch(3)
    finish(receipt.job_ids[0], "succeeded")
    fragment = client.get(f"/dashboard/fragments/batches/{receipt.batch_id}")
    assert fragment.status_code == 200 and "1</strong> of 3 done" in fragment.text
    assert "X-Dashboard-Final" not in fragment.headers
    manifest = client.get(f"/dashboard/batches/{receipt.batch_id}/manifest")
    assert manifest.status_code == 200
    assert (
        manifest.headers["content-disposition"]
        == f'attachment; filename="manifest-{receipt.batch_id}.jsonl"'
    )
    lines = [json.loads(line) for line in manifest.text.splitlines()]
    assert [(line["ref"], line["status"]) for line in lines] == [
        ("sku-0", "succeeded"),
        ("sku-1", "queued"),
        ("sku-2", "queued"),
    ]


# --- one job ------------------------------------------------------------------------------------


def test_job_page_shows_request_provider_timings_images_and_events(
    client: httpx.Client, s3
) -> None:  # type: ignore[no-untyped-def]
    job_id = jobs.enqueue(
        {"prompt": "a lighthouse at dawn", "seed": 7, "resolution": "4K"}, dispatch=False
    )
    picture = _put(s3, stored(BUCKET, f"images/j/{job_id}/0.png", 1200, 800))
    finish(job_id, "succeeded", image=picture)
    page = client.get(f"/dashboard/jobs/{job_id}").text
    for text in [
        "a lighthouse at dawn",
        f"pred-{job_id.hex[:10]}",
        "1200 \N{MULTIPLICATION SIGN} 800 px",
        f"{len(picture.data):,} bytes",
        "4K",
        "succeeded",
        "Event log",
        f"/dashboard/images/{job_id}/0",
        "Submit attempts",
    ]:
        assert text in page, text
    assert "/retry" not in page and "/cancel" not in page  # it ended well
    thumb = _THUMB.search(page)
    assert thumb and "size=512" in thumb.group(1)
    full = client.get(f"/dashboard/images/{job_id}/0", follow_redirects=False)
    assert full.status_code == 307 and httpx.get(full.headers["location"]).content == picture.data


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/jobs/{id}",
        "/dashboard/batches/{id}",
        "/dashboard/thumbs/{id}/0",
        "/dashboard/images/{id}/0",
        "/dashboard/batches/{id}/manifest",
        "/dashboard/fragments/jobs/{id}",
        "/dashboard/lookup?id={id}",
        "/dashboard/jobs/not-an-id",
        "/dashboard/lookup?id=x",
    ],
)
def test_unknown_ids_are_404_pages(client: httpx.Client, path: str) -> None:
    reply = client.get(path.format(id=uuid.uuid4()))
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("text/html") and "Not found" in reply.text


def test_lookup_opens_a_job_or_a_batch(client: httpx.Client) -> None:
    receipt = _batch(1)
    job = client.get(f"/dashboard/lookup?id={receipt.job_ids[0]}", follow_redirects=False)
    assert job.headers["location"] == f"/dashboard/jobs/{receipt.job_ids[0]}"
    batch = client.get(f"/dashboard/lookup?id=%20{receipt.batch_id}", follow_redirects=False)
    assert batch.headers["location"] == f"/dashboard/batches/{receipt.batch_id}"


# --- thumbnails ---------------------------------------------------------------------------------


def test_thumbnails_are_small_jpegs_cached_by_checksum(client: httpx.Client, s3) -> None:  # type: ignore[no-untyped-def]
    job_id = jobs.enqueue({"prompt": "a wide valley"}, dispatch=False)
    picture = _put(s3, stored(BUCKET, f"images/t/{job_id}/0.png", 1200, 800))
    finish(job_id, "succeeded", image=picture)
    url = _THUMB.search(client.get(f"/dashboard/jobs/{job_id}").text)
    assert url
    small = client.get(f"/dashboard/thumbs/{job_id}/0?size=256")
    assert small.status_code == 200 and small.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(small.content)).size == (256, 171)
    assert len(small.content) < 20_000
    large = client.get(url.group(1).replace("&amp;", "&"))
    assert Image.open(io.BytesIO(large.content)).size == (512, 341)
    assert "immutable" in large.headers["cache-control"]
    again = client.get(
        f"/dashboard/thumbs/{job_id}/0?size=256", headers={"If-None-Match": small.headers["etag"]}
    )
    assert again.status_code == 304 and not again.content
    assert client.get(f"/dashboard/thumbs/{job_id}/1").status_code == 404


def test_thumbnails_work_with_the_local_folder_of_the_embedded_mode(
    configured, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, IMAGEGEN_STORAGE_URL=tmp_path.as_uri())
    reset_settings()
    job_id = jobs.enqueue({"prompt": "a local picture"}, dispatch=False)
    picture = stored(str(tmp_path), f"{job_id}/0.png", 300, 600)
    (tmp_path / str(job_id)).mkdir()
    (tmp_path / picture.key).write_bytes(picture.data)
    finish(job_id, "succeeded", image=picture)
    with running_api() as url, httpx.Client(base_url=url, headers=AUTH) as local:
        thumb = local.get(f"/dashboard/thumbs/{job_id}/0")
        assert thumb.status_code == 200
        assert Image.open(io.BytesIO(thumb.content)).size == (128, 256)
        full = local.get(f"/dashboard/images/{job_id}/0")
        assert full.status_code == 200 and full.content == picture.data


# --- hostile input: refused with a 4xx naming the rule, never a 500 -----------------------------


def test_a_nul_in_the_gallery_code_filter_is_refused(client: httpx.Client) -> None:
    receipt = _batch(2)
    reply = client.get(f"/dashboard/batches/{receipt.batch_id}", params={"code": "x\x00y"})
    assert reply.status_code == 422
    assert "code: must not contain NUL characters" in reply.text


@pytest.mark.parametrize("value", ["100000000000000000000", "-100000000000000000000"])
@pytest.mark.parametrize("name", ["after", "before"])
def test_gallery_positions_out_of_range_are_refused(
    client: httpx.Client, name: str, value: str
) -> None:
    receipt = _batch(2)
    reply = client.get(f"/dashboard/batches/{receipt.batch_id}", params={name: value})
    assert reply.status_code == 422, reply.text[:300]
    assert reply.json()["errors"][0]["field"] == name


@pytest.mark.parametrize("index", ["100000000000000000000", "-100000000000000000000"])
@pytest.mark.parametrize("kind", ["thumbs", "images"])
def test_image_indexes_out_of_range_name_no_image(
    client: httpx.Client, kind: str, index: str
) -> None:
    receipt = _batch(1)
    reply = client.get(f"/dashboard/{kind}/{receipt.job_ids[0]}/{index}")
    assert reply.status_code == 404 and "has no stored image" in reply.text
