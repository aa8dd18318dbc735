"""The S3 store against a real S3 server (moto over HTTP): one PutObject for a small object, a
multipart upload of bounded parts for a large one, and nothing left behind when the stream
breaks, before or after the first part went up."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import boto3
import pytest

from tests import harness
from worker.blobs.storage import S3Store

pytestmark = pytest.mark.integration

BUCKET = "imagegen-storage-test"
PART = 5 * 1024 * 1024  # the smallest part S3 accepts


class Broken(Exception):
    """The download broke off."""


class BreaksAfter(io.RawIOBase):
    """A stream that raises after ``limit`` bytes, like a download that breaks off."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__()
        self._source, self._limit, self._sent = io.BytesIO(data), limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._sent >= self._limit:
            raise Broken("connection reset")
        count = self._source.readinto(buffer[: min(len(buffer), 64 * 1024)])
        self._sent += count
        return count


@pytest.fixture
def store(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
    for key, value in harness.AWS_ENV.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    if BUCKET not in {bucket["Name"] for bucket in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    yield S3Store(BUCKET, "t", endpoint_url=s3_endpoint, chunk_bytes=PART, presign_expiry_s=60)


def stored(store: S3Store, key: str) -> bytes:
    return store.get(key)


def pending_uploads(s3_endpoint: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    return [
        upload["Key"] for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    ]


@pytest.mark.parametrize(
    ("size", "announced"),
    [
        (100_000, True),
        (100_000, False),
        (PART, False),
        (PART, True),
        (2 * PART + 123, False),
        (2 * PART + 123, True),
        (3 * PART, False),
    ],
)
def test_stores_exactly_what_was_read(store: S3Store, size: int, announced: bool) -> None:
    data = os.urandom(size)
    key = f"t/{size}-{announced}.png"
    store.put(key, io.BytesIO(data), content_type="image/png", size=size if announced else None)
    assert stored(store, key) == data


def test_a_short_announced_size_loses_nothing(store: S3Store) -> None:
    data = os.urandom(2 * PART + 5)
    store.put("t/longer.png", io.BytesIO(data), content_type="image/png", size=1000)
    assert stored(store, "t/longer.png") == data


def test_a_stream_without_readinto_is_read_too(store: S3Store) -> None:
    class Plain:
        def __init__(self, data: bytes) -> None:
            self._source = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._source.read(min(size, 1000))

    data = os.urandom(PART + 10)
    store.put("t/plain.png", Plain(data), content_type="image/png")  # type: ignore[arg-type]
    assert stored(store, "t/plain.png") == data


@pytest.mark.parametrize("breaks_at", [1000, PART + 1000, 2 * PART])
def test_a_broken_stream_leaves_no_object_and_no_upload(
    store: S3Store, s3_endpoint: str, breaks_at: int
) -> None:
    key = f"t/broken-{breaks_at}.png"
    with pytest.raises(Broken):
        store.put(key, BreaksAfter(os.urandom(3 * PART), breaks_at), content_type="image/png")
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix=key)
    assert key not in pending_uploads(s3_endpoint)
