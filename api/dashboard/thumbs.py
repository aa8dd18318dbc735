"""Thumbnails of stored images, made on demand, so a page never loads a full 4K image.

``GET /dashboard/thumbs/{job_id}/{index}?size=256`` reads the object from the store (S3 or the
local folder of the embedded mode), scales it with Pillow and answers a small JPEG. Memory stays
bounded: at most :data:`DECODERS` images are decoded at once (a 4K PNG is about 25 MB decoded),
and a source over ``IMAGEGEN_MAX_OUTPUT_PIXELS`` (by its row, then by its header, read before
any pixel is decoded) or :data:`MAX_SOURCE_BYTES` gets a placeholder instead of a decode. PNG
has no reduced decoding (JPEG's ``draft`` does), so the pixel cap is what bounds a decode.
Thumbnails are kept in a small in-memory LRU (:data:`CACHE_BYTES`) keyed by the image's
checksum, and the browser may keep them too: the URL carries the checksum (``v=``), so a
retried job that stored a new picture gets a new URL.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from functools import cache as once

from cachetools import LRUCache
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from PIL import Image

from api.dashboard.auth import Viewer, require_viewer
from api.dashboard.data import THUMB_SIZES
from api.dashboard.pages import NotFoundPage, parse_id
from models import JobImage
from worker.blobs.storage import LocalStore, ObjectStore
from worker.core.errors import StorageError
from worker.core.settings import get_settings
from worker.db.engine import session_scope
from worker.store import dashboard as q

log = logging.getLogger("imagegen.dashboard")

DECODERS = 2
MAX_SOURCE_BYTES = 64 * 1024 * 1024
CACHE_BYTES = 32 * 1024 * 1024
#: A thumbnail URL names the picture's checksum, so the browser may keep it a week.
IMMUTABLE = "private, max-age=604800, immutable"

router = APIRouter(prefix="/dashboard", include_in_schema=False)
_decoding = threading.BoundedSemaphore(DECODERS)


class ThumbnailCache:
    """Encoded thumbnails, least recently used first out, bounded in bytes; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self._items: LRUCache[tuple[str, str, int], bytes] = LRUCache(max_bytes, getsizeof=len)
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, int]) -> bytes | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple[str, str, int], data: bytes) -> None:
        with self._lock:
            if len(data) <= self._items.maxsize:
                self._items[key] = data


cache = ThumbnailCache(CACHE_BYTES)


class TooLarge(Exception):
    """The source has more pixels than a thumbnail may decode."""


def make_thumbnail(data: bytes, size: int, *, max_pixels: int) -> bytes:
    """A JPEG at most ``size`` pixels on its longer side (never larger than the source).

    Raises :class:`TooLarge` before decoding a source of more than ``max_pixels`` pixels."""
    with warnings.catch_warnings():  # the cap below is the check; Pillow's would only warn
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        source = Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"])
    with source:
        if source.width * source.height > max_pixels:
            raise TooLarge(f"{source.width}x{source.height} pixels")
        source.draft("RGB", (size, size))  # JPEG sources decode at a fraction of their size
        source.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
        picture = _flattened(source)
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=82, optimize=True)
    return out.getvalue()


@once
def placeholder(size: int) -> bytes:
    """A plain grey JPEG in place of a picture too large to decode."""
    out = io.BytesIO()
    Image.new("RGB", (size, size), "#d0d0d0").save(out, "JPEG", quality=60)
    return out.getvalue()


def _flattened(picture: Image.Image) -> Image.Image:
    """RGB on a white background (JPEG has no transparency)."""
    if picture.mode in ("RGB", "L"):
        return picture
    rgba = picture.convert("RGBA")
    background = Image.new("RGB", rgba.size, "white")
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _image(job_id: str, index: int) -> JobImage:
    with session_scope() as session:
        image = q.image_row(session, job_id=parse_id(job_id), index=index)
    if image is None:
        raise NotFoundPage(f"job {job_id} has no stored image {index}")
    return image


@router.get("/thumbs/{job_id}/{index}")
def thumbnail(
    job_id: str,
    index: int,
    request: Request,
    size: int = 256,
    v: str = "",
    viewer: Viewer = Depends(require_viewer),
) -> Response:
    """A small JPEG of one stored image (``size``: 256 or 512 pixels)."""
    size = size if size in THUMB_SIZES else THUMB_SIZES[0]
    image = _image(job_id, index)
    etag = f'"{image.sha256[:32]}-{size}"'
    headers = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE if v and image.sha256.startswith(v) else "private, no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    key = (image.key, image.sha256, size)
    data = cache.get(key)
    if data is None:
        try:
            data = _render(request.app.state.links(), image, size)
        except TooLarge as exc:
            log.warning(
                "thumbnail_refused",
                extra={"job_id": str(image.job_id), "index": image.idx, "error": str(exc)},
            )
            data = placeholder(size)
            headers["X-Imagegen-Thumbnail"] = "placeholder: the image is too large to decode"
        cache.put(key, data)
    return Response(data, media_type="image/jpeg", headers=headers)


def _render(store: ObjectStore, image: JobImage, size: int) -> bytes:
    max_pixels = get_settings().max_output_pixels
    if image.bytes > MAX_SOURCE_BYTES:
        raise TooLarge(f"{image.bytes} bytes")
    if (image.width or 0) * (image.height or 0) > max_pixels:
        raise TooLarge(f"{image.width}x{image.height} pixels")
    with _decoding:  # bounded: a handful of decoded pictures in memory at once
        try:
            return make_thumbnail(store.get(image.key), size, max_pixels=max_pixels)
        except (StorageError, OSError, Image.DecompressionBombError) as exc:
            log.warning(
                "thumbnail_failed",
                extra={"job_id": str(image.job_id), "index": image.idx, "error": str(exc)},
            )
            raise NotFoundPage(f"the stored image {image.idx} could not be read") from None


@router.get("/images/{job_id}/{index}")
def full_image(
    job_id: str, index: int, request: Request, viewer: Viewer = Depends(require_viewer)
) -> Response:
    """The stored image itself: a presigned S3 link, or the file of the embedded mode."""
    image = _image(job_id, index)
    store = request.app.state.links()
    if isinstance(store, LocalStore):
        return FileResponse(
            store.path(image.key),
            media_type=image.content_type,
            headers={"Cache-Control": "private, max-age=3600"},
        )
    return RedirectResponse(store.url_for(image.key), status_code=307)
