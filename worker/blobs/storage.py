"""Object stores: S3-compatible (boto3) for service mode, a local folder for the embedded mode.

Both take a file object and stream it: S3 through one PutObject when the object fits in one
part, else a multipart upload of parts read one after the other into the same buffer (one part
in memory per upload); the folder through a temporary file renamed into place. Nothing is
committed before the stream has been read to its end (where a verifying reader raises on a
truncated or corrupt download), and if reading raises, no object is left behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from worker.core.errors import StorageError
from worker.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef


class ObjectStore(Protocol):
    """Where output images are kept."""

    bucket: str
    prefix: str
    #: How long a link of ``url_for`` works, in seconds; None: it does not expire.
    link_lifetime_s: int | None

    def put(
        self, key: str, stream: BinaryIO, *, content_type: str, size: int | None = None
    ) -> None:
        """Store everything ``stream`` yields at ``key``; ``size``, when the source announced
        it, lets a small object go up without a part-sized buffer."""

    def get(self, key: str) -> bytes: ...

    def url_for(self, key: str) -> str: ...

    def delete(self, keys: Sequence[str]) -> None: ...


def object_key(prefix: str, job_id: uuid.UUID, created_at: datetime, index: int) -> str:
    """``{prefix}/{yyyy}/{mm}/{dd}/{job_id}/{index}.png``: a repeated copy hits the same key."""
    path = f"{created_at:%Y/%m/%d}/{job_id}/{index}.png"
    return f"{prefix}/{path}" if prefix else path


class S3Store:
    """An S3-compatible bucket (AWS, MinIO, moto); credentials from the standard AWS_* variables."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None,
        chunk_bytes: int,
        presign_expiry_s: int,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._expiry = presign_expiry_s
        self.link_lifetime_s: int | None = presign_expiry_s
        config = BotoConfig(
            retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60
        )
        self._client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, config=config
        )
        self._part_bytes = chunk_bytes

    def put(
        self, key: str, stream: BinaryIO, *, content_type: str, size: int | None = None
    ) -> None:
        """One PutObject when the object fits in a part, else a multipart upload; either is
        sent only once the stream has ended (see the module's docstring)."""
        small = size is not None and size < self._part_bytes
        part = bytearray(size + 1 if small and size is not None else self._part_bytes)
        filled, more = _fill(stream, part)  # one spare byte: a small object's EOF shows here
        if more and len(part) < self._part_bytes:  # more than announced: a whole part then
            part.extend(bytearray(self._part_bytes - len(part)))
            filled, more = _fill(stream, part, filled)
        if not more:
            del part[filled:]
            with self._errors(key):
                self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=_body(part), ContentType=content_type
                )
            return
        self._put_parts(key, stream, part, content_type)

    def _put_parts(self, key: str, stream: BinaryIO, part: bytearray, content_type: str) -> None:
        """A multipart upload whose parts are read into ``part`` (already full) one by one;
        aborted if anything fails, the stream's error raised as it came."""
        with self._errors(key):
            upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            more = True
            while part:
                with self._errors(key):
                    answer = self._client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        Body=_body(part),
                        PartNumber=len(parts) + 1,
                    )
                parts.append({"ETag": answer["ETag"], "PartNumber": len(parts) + 1})
                filled, more = _fill(stream, part) if more else (0, False)
                del part[filled:]  # the last part is shorter (or empty: the end)
            with self._errors(key):
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            with contextlib.suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise

    @contextlib.contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"upload to s3://{self.bucket}/{key} failed: {exc}") from None

    def get(self, key: str) -> bytes:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
            return bytes(body.read())
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"download of s3://{self.bucket}/{key} failed: {exc}") from None

    def url_for(self, key: str) -> str:
        """A presigned download URL."""
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self._expiry,
            )
        )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (tests, demo, first start)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._client.create_bucket(Bucket=self.bucket)

    def delete(self, keys: Sequence[str]) -> None:
        """Delete objects, 1000 per request; a missing key is not an error."""
        for start in range(0, len(keys), 1000):
            chunk: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[start : start + 1000]]
            try:
                answer = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}
                )
            except (BotoCoreError, ClientError) as exc:
                raise StorageError(f"deleting from s3://{self.bucket} failed: {exc}") from None
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StorageError(
                    f"deleting s3://{self.bucket}/{first.get('Key')} failed: {first.get('Code')}"
                )


class LocalStore:
    """A folder on this machine (the embedded mode); the folder is the "bucket"."""

    def __init__(self, root: Path, prefix: str = "") -> None:
        self.root = root
        self.bucket = str(root)
        self.prefix = prefix
        self.link_lifetime_s: int | None = None  # file:// links do not expire

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"key {key!r} escapes the storage folder")
        return path

    def put(
        self, key: str, stream: BinaryIO, *, content_type: str, size: int | None = None
    ) -> None:
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                try:
                    while block := stream.read(1024 * 1024):
                        tmp.write(block)
                except BaseException:
                    os.unlink(tmp.name)
                    raise
            os.replace(tmp.name, target)
        except OSError as exc:
            raise StorageError(f"writing {target} failed: {exc.strerror}") from None

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"reading {key} failed: {exc.strerror}") from None

    def url_for(self, key: str) -> str:
        return self.path(key).as_uri()

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def delete(self, keys: Sequence[str]) -> None:
        """Delete files; a missing one is not an error."""
        for key in keys:
            try:
                self.path(key).unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(f"deleting {key} failed: {exc.strerror}") from None


def _fill(stream: BinaryIO, buffer: bytearray, filled: int = 0) -> tuple[int, bool]:
    """Read into ``buffer`` (from ``filled`` on) until it is full or the stream ends: (bytes
    in it, whether it is full, i.e. there may be more)."""
    readinto = getattr(stream, "readinto", None) or _readinto_by_read(stream)
    with memoryview(buffer) as view:
        while filled < len(buffer):
            count = readinto(view[filled:])
            if not count:
                return filled, False
            filled += count
    return filled, True


def _readinto_by_read(stream: BinaryIO) -> Callable[[memoryview], int]:
    def readinto(view: memoryview) -> int:
        data = stream.read(len(view))
        view[: len(data)] = data
        return len(data)

    return readinto


def _body(part: bytearray) -> bytes:
    """The part as a request body: botocore sends any bytes-like object as it is (no copy)."""
    return cast(bytes, part)


def store_from_settings(settings: Settings) -> S3Store | LocalStore:
    """The store named by ``IMAGEGEN_STORAGE_URL`` (a local folder when unset)."""
    parts = urlsplit(settings.effective_storage_url)
    prefix = parts.path.strip("/")
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    return S3Store(
        parts.netloc,
        prefix,
        endpoint_url=settings.s3_endpoint_url,
        chunk_bytes=settings.multipart_chunk_bytes,
        presign_expiry_s=settings.presign_expiry_s,
    )


def probe_bucket(bucket: str, endpoint_url: str | None, timeout_s: float) -> None:
    """Raise unless ``bucket`` answers a HEAD within ``timeout_s`` (readiness, one try)."""
    _probe_client(endpoint_url, timeout_s).head_bucket(Bucket=bucket)


@lru_cache(maxsize=4)
def _probe_client(endpoint_url: str | None, timeout_s: float) -> Any:
    config = BotoConfig(
        connect_timeout=timeout_s, read_timeout=timeout_s, retries={"total_max_attempts": 1}
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)


def probe_write(store: ObjectStore) -> None:
    """Write a small object under the store's prefix and delete it again; raise
    :class:`StorageError` if either fails (a missing bucket, no permission, an outage)."""
    name = f".probe/{uuid.uuid4().hex}"
    key = f"{store.prefix}/{name}" if store.prefix else name
    store.put(key, io.BytesIO(b"probe"), content_type="text/plain", size=5)
    try:
        store.delete([key])
    except StorageError as exc:
        raise StorageError(f"the probe object {key} was written but not deleted: {exc}") from None
