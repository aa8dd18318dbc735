"""Copy one provider output into the object store: stream, verify, upload, measure.

Output URLs come from the provider's answer: untrusted input. The download client
(:func:`output_client`) connects only where the URL policy allows (``worker.egress``: every
redirect hop and every resolved address checked at connect time; private hosts only when named
in ``IMAGEGEN_TRUSTED_OUTPUT_HOSTS``); a refused URL fails the job at once (``output_refused``),
nothing is fetched or stored. Each download is bounded as a whole, not only per read: it must
finish within ``IMAGEGEN_DOWNLOAD_DEADLINE_S`` and keep an average of
``IMAGEGEN_DOWNLOAD_MIN_RATE_BPS`` after its first :data:`RATE_GRACE_S` seconds; a slower one
fails this attempt (retried like any other broken download).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from worker.blobs.storage import ObjectStore
from worker.blobs.verify import VerifyingReader
from worker.core.errors import (
    OutputCorrupt,
    OutputExpired,
    OutputRefused,
    OutputUnavailable,
    TransferError,
)
from worker.core.settings import Settings
from worker.egress.guard import AddressGuard, Refused, Resolve, guarded_client, resolve

log = logging.getLogger("imagegen.transfer")

PNG_CONTENT_TYPE = "image/png"
_EXPIRED = {401, 403, 404, 410}
#: The minimum rate is measured from this many seconds into a download (a slow start is fine).
RATE_GRACE_S = 10.0
Clock = Callable[[], float]


@dataclass(frozen=True)
class DownloadLimits:
    """How much, how large and how slow one output download may be."""

    max_bytes: int
    max_pixels: int
    deadline_s: float
    min_rate_bps: int

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadLimits:
        return cls(
            max_bytes=settings.max_output_bytes,
            max_pixels=settings.max_output_pixels,
            deadline_s=settings.download_deadline_s,
            min_rate_bps=settings.download_min_rate_bps,
        )


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


def output_client(settings: Settings, *, resolver: Resolve = resolve) -> httpx.Client:
    """The HTTP client of output downloads: guarded, redirects followed hop by hop."""
    guard = AddressGuard(
        schemes=("https",),
        trusted=settings.trusted_output_host_set,
        resolver=resolver,
    )
    read_s = min(settings.download_timeout_s, settings.download_deadline_s)
    return guarded_client(
        guard,
        timeout=httpx.Timeout(read_s, connect=settings.connect_timeout_s),
        follow_redirects=True,
        headers={"Accept-Encoding": "identity"},
    )


def copy_output(
    http: httpx.Client,
    url: str,
    store: ObjectStore,
    key: str,
    *,
    limits: DownloadLimits,
    clock: Clock = time.monotonic,
) -> StoredObject:
    """Stream ``url`` into ``store`` at ``key``; raise a :class:`TransferError` on any fault."""
    try:
        with http.stream("GET", url) as response:
            _check_response(response, limits.max_bytes)
            length = _content_length(response)
            reader = VerifyingReader(
                _paced(response.iter_bytes(), limits, clock),
                max_bytes=limits.max_bytes,
                max_pixels=limits.max_pixels,
                expected_bytes=length,
            )
            store.put(key, reader, content_type=PNG_CONTENT_TYPE, size=length)  # type: ignore[arg-type]
    except Refused as exc:
        raise OutputRefused(f"the output URL is refused: {exc.message}") from None
    except httpx.TimeoutException:
        raise OutputUnavailable("the output download timed out") from None
    except httpx.TooManyRedirects:
        raise OutputRefused("the output URL redirects too many times") from None
    except httpx.HTTPError as exc:  # connection reset, short body against Content-Length ...
        raise OutputCorrupt(f"the output download broke off: {type(exc).__name__}") from None
    except TransferError:
        raise
    except Exception as exc:  # whatever else the answer provokes ends as a failed attempt
        log.exception("output_copy_error", extra={"key": key})
        raise OutputCorrupt(f"the output could not be read: {type(exc).__name__}") from None
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


def _paced(chunks: Iterator[bytes], limits: DownloadLimits, clock: Clock) -> Iterator[bytes]:
    """The download's chunks, cut off past the deadline or below the minimum rate."""
    started = clock()
    received = 0
    for chunk in chunks:
        received += len(chunk)
        elapsed = clock() - started
        if elapsed > limits.deadline_s:
            raise OutputUnavailable(
                f"the output download took longer than {limits.deadline_s:g} s "
                f"({received} bytes received)"
            )
        if elapsed > RATE_GRACE_S and received < limits.min_rate_bps * elapsed:
            raise OutputUnavailable(
                f"the output download was slower than {limits.min_rate_bps} bytes/s "
                f"({received} bytes in {elapsed:.0f} s)"
            )
        yield chunk


def _check_response(response: httpx.Response, max_bytes: int) -> None:
    status = response.status_code
    if status in _EXPIRED:
        raise OutputExpired(f"the output URL answered HTTP {status}: expired or missing")
    if status >= 400:
        raise OutputUnavailable(f"the output URL answered HTTP {status}")
    length = _content_length(response)
    if length is not None and length > max_bytes:
        raise OutputRefused(f"the output announces {length} bytes, over the {max_bytes} limit")


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None
