"""A stored picture with a huge pixel count never reaches the thumbnail decoder: the API
answers a placeholder (its row says too many pixels, or its header does, if the row is wrong),
through the real app, Postgres and the S3 server."""

from __future__ import annotations

import io
from collections.abc import Iterator

import boto3
import httpx
import pytest
from PIL import Image

from tests.conftest import BUCKET
from tests.dashboard import Stored, finish, sign_in
from tests.hostile import bomb_png
from tests.producers import configure
from worker.service import jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def client(configured, monkeypatch: pytest.MonkeyPatch, api_url: str) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    configure(monkeypatch)
    with httpx.Client(base_url=api_url, timeout=30) as browser:
        assert sign_in(browser).status_code == 303
        yield browser


@pytest.mark.parametrize(("row_width", "row_height"), [(12000, 12000), (100, 100)])
def test_a_picture_of_144_megapixels_gets_a_placeholder(
    client: httpx.Client, service_env: dict[str, str], row_width: int, row_height: int
) -> None:
    # Given a stored 12000x12000 PNG of 420 KB or less, its row telling the truth or not
    job_id = jobs.enqueue({"prompt": "a vast plain"}, dispatch=False)
    data = bomb_png(12000, 12000)
    key = f"images/bomb/{job_id}/0.png"
    s3 = boto3.client("s3", endpoint_url=service_env["IMAGEGEN_S3_ENDPOINT_URL"])
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    finish(job_id, "succeeded", image=Stored(BUCKET, key, data, row_width, row_height))

    # When the dashboard asks for its thumbnail
    thumb = client.get(f"/dashboard/thumbs/{job_id}/0?size=256")

    # Then it answers a small placeholder, saying so, instead of decoding 144 MP
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["x-imagegen-thumbnail"].startswith("placeholder")
    assert Image.open(io.BytesIO(thumb.content)).size == (256, 256)
