"""Output downloads: signed URLs, the picture cache, and the ways a download can go wrong.

Output URLs imitate signed CDN links (``?Expires=...&Signature=...``): a link whose signature does
not match or whose time is up answers 403, like an expired S3 presigned URL. Pictures are cached
by content, so repeated downloads serve identical bytes without rendering again.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from urllib.parse import urlencode

from cachetools import LRUCache
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from simulator.faults import FaultSet, arg_of, fires_on, number_arg

CHUNK_BYTES = 64 * 1024
#: A download at full speed goes out in large pieces: each piece costs the server a round of
#: the event loop, and a 25 MB picture in 64 KiB pieces kept a core busy in the benchmarks.
FAST_CHUNK_BYTES = 1024 * 1024
_S3_ERROR = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message></Error>"
)
_EXPIRED = {
    "403": ("AccessDenied", "Request has expired"),
    "404": ("NoSuchKey", "The specified key does not exist."),
}
# Set while a truncated download is being answered, so the log filter below knows the
# "returned without completing response" error that follows is on purpose.
_TRUNCATING: contextvars.ContextVar[bool] = contextvars.ContextVar("truncating", default=False)


def output_path(prediction_id: str, index: int) -> str:
    """The path of output ``index`` (0-based) of a prediction."""
    return f"/outputs/{prediction_id}/{index}.png"


class UrlSigner:
    """Signs and checks output URLs with a per-process secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def url(self, base_url: str, path: str, expires_at: float) -> str:
        """A signed URL for ``path`` under ``base_url`` that expires at ``expires_at``."""
        expires = str(int(expires_at))
        query = urlencode({"Expires": expires, "Signature": self._sign(path, expires)})
        return f"{base_url}{path}?{query}"

    def problem(
        self, path: str, expires: str | None, signature: str | None, now: float
    ) -> str | None:
        """Why a signed link is refused, or None if it is valid."""
        if not expires or not signature or not expires.isdigit():
            return "Query-string authentication requires the Signature and Expires parameters"
        if not hmac.compare_digest(signature, self._sign(path, expires)):
            return "The request signature we calculated does not match the signature you provided"
        if int(expires) < now:
            return "Request has expired"
        return None

    def _sign(self, path: str, expires: str) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]


class OutputCache:
    """Least-recently-used picture bytes, bounded by their total size (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self._lock = threading.Lock()
        self._items: LRUCache[Hashable, bytes] = LRUCache(max_bytes, getsizeof=len)

    @property
    def max_bytes(self) -> int:
        return int(self._items.maxsize)

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        """A new bound (a config change) starts an empty cache."""
        with self._lock:
            if value != self._items.maxsize:
                self._items = LRUCache(value, getsizeof=len)

    def get_or_render(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The cached bytes for ``key``, rendering them (outside the lock) on a miss."""
        with self._lock:
            cached = self._items.get(key)
        if cached is not None:
            return cached
        data = render()
        with self._lock:
            if len(data) <= self._items.maxsize:
                self._items[key] = data
        return data

    def clear(self) -> None:
        """Drop every picture."""
        with self._lock:
            self._items.clear()


def download_faults(faults: FaultSet, attempt: int) -> list[str]:
    """The output faults that act on the ``attempt``-th (1-based) download of one output."""
    steady = [
        name for name in ("output_expired", "output_slow", "output_mislabelled") if name in faults
    ]
    counted = ["output_truncated"] if fires_on(faults, "output_truncated", attempt) else []
    return steady + counted


def s3_error(status: int, code: str, message: str) -> Response:
    """An error page in the style of an S3-backed CDN."""
    body = _S3_ERROR.format(code=code, message=message)
    return Response(body, status_code=status, media_type="application/xml")


def expired_response(faults: FaultSet) -> Response:
    """The answer of ``output_expired``: 403 AccessDenied or 404 NoSuchKey."""
    status = arg_of(faults, "output_expired")
    code, message = _EXPIRED.get(status or "", _EXPIRED["404"])
    return s3_error(403 if status == "403" else 404, code, message)


def picture_response(
    data: bytes,
    *,
    applied: list[str],
    faults: FaultSet,
    default_rate: int,
    pause: Callable[[float], Awaitable[None]],
) -> Response:
    """The download answer for ``data`` with the output faults in ``applied``."""
    media_type = "image/png"
    if "output_mislabelled" in applied:
        media_type = arg_of(faults, "output_mislabelled") or "image/jpeg"
    if "output_truncated" in applied:
        return TruncatedResponse(data, media_type=media_type)
    rate = None
    if "output_slow" in applied:
        rate = max(number_arg(faults, "output_slow", default_rate), 1.0)
    headers = {"Content-Length": str(len(data)), "Cache-Control": "private, max-age=86400"}
    return StreamingResponse(_chunks(data, rate, pause), media_type=media_type, headers=headers)


async def _chunks(
    data: bytes, rate: float | None, pause: Callable[[float], Awaitable[None]]
) -> AsyncIterator[bytes]:
    # A slow link sends small chunks at a steady pace rather than big bursts.
    size = FAST_CHUNK_BYTES if rate is None else max(1, min(CHUNK_BYTES, int(rate // 10)))
    for start in range(0, len(data), size):
        chunk = data[start : start + size]
        yield chunk
        if rate is not None:
            await pause(len(chunk) / rate)


class TruncatedResponse(Response):
    """Declares the full Content-Length, sends half the bytes, then drops the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the head and half the body, and return without finishing the response."""
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        # uvicorn closes the connection when the app returns before the last body part.
        _TRUNCATING.set(True)


class QuietTruncation(logging.Filter):
    """Drops uvicorn's error about an unfinished response when the truncation was deliberate."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record except the one a deliberate truncation causes."""
        return not (_TRUNCATING.get() and "without completing response" in record.getMessage())
