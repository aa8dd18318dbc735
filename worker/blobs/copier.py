"""Copy one provider output into the object store: stream, verify, upload, measure."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from worker.blobs.storage import ObjectStore
from worker.blobs.verify import VerifyingReader
from worker.core.errors import OutputCorrupt, OutputExpired, OutputUnavailable, TransferError

PNG_CONTENT_TYPE = "image/png"
_EXPIRED = {401, 403, 404, 410}


@dataclass(frozen=True)
class StoredObject:
    """What was written, as measured on the way through."""

    key: str
    bytes: int
    sha256: str
    width: int
    height: int
    content_type: str
    announced_type: str | None


def copy_output(
    http: httpx.Client, url: str, store: ObjectStore, key: str, *, max_bytes: int
) -> StoredObject:
    """Stream ``url`` into ``store`` at ``key``; raise a :class:`TransferError` on any fault."""
    try:
        with http.stream("GET", url) as response:
            _check_response(response, max_bytes)
            length = _content_length(response)
            reader = VerifyingReader(
                response.iter_bytes(), max_bytes=max_bytes, expected_bytes=length
            )
            store.put(key, reader, content_type=PNG_CONTENT_TYPE, size=length)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        raise OutputUnavailable("the output download timed out") from None
    except httpx.HTTPError as exc:  # connection reset, short body against Content-Length ...
        raise OutputCorrupt(f"the output download broke off: {type(exc).__name__}") from None
    if not reader.finished or reader.width is None or reader.height is None:
        raise TransferError("the upload ended before the whole output was read")
    return StoredObject(
        key=key,
        bytes=reader.size,
        sha256=reader.sha256.hexdigest(),
        width=reader.width,
        height=reader.height,
        content_type=PNG_CONTENT_TYPE,
        announced_type=response.headers.get("content-type"),
    )


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if status in _EXPIRED:
        raise OutputExpired(f"the output URL answered HTTP {status}: expired or missing")
    if status >= 400:
        raise OutputUnavailable(f"the output URL answered HTTP {status}")
    length = _content_length(response)
    if length is not None and length > max_bytes:
        raise OutputCorrupt(f"the output announces {length} bytes, over the {max_bytes} limit")


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None
