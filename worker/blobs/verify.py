"""Streaming verification of a downloaded image: hash, size, PNG structure and dimensions.

:class:`VerifyingReader` wraps the download's byte iterator as a file object for the uploader.
It hashes and measures on the way and checks the PNG chunk by chunk (signature, CRCs, IEND),
so a short, corrupt or mislabelled body raises before the upload completes: a partial object
is never committed. The dimensions come from the ``IHDR`` chunk as it passes: an image over
the pixel cap (``IMAGEGEN_MAX_OUTPUT_PIXELS``) is refused before anything else looks at it,
so a small file declaring 20000x20000 pixels (a decompression bomb) ends the copy at once.
Pillow then checks the header; the pixels are never decoded, so memory stays flat whatever
the image size.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from collections.abc import Iterator

from PIL import Image, UnidentifiedImageError

from worker.core.errors import OutputCorrupt, OutputRefused

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEADER_BYTES = 64 * 1024  # Pillow finds the size in the first few bytes; stop feeding after
_MAX_CHUNK = 2**31 - 1  # the PNG specification's limit on a chunk's length


class PngChecker:
    """Incremental PNG structure check: signature, every chunk's CRC, and a final IEND.

    Streams: a chunk's body is checked as it passes (the CRC is carried from piece to piece),
    so memory stays at a few bytes whatever the size of the chunks (some encoders write the
    whole picture as one IDAT)."""

    def __init__(self) -> None:
        self._head = bytearray()  # a signature, chunk header or CRC being gathered
        self._signed = False
        self._kind = b""
        self._left = -1  # body bytes still to come in the current chunk; -1: in no chunk
        self._crc = 0
        self._chunks = 0
        self._ihdr = bytearray()  # the first 8 body bytes of IHDR: width and height
        self.size: tuple[int, int] | None = None
        self.complete = False

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self.complete:
                raise OutputCorrupt("the output has data after the PNG end marker")
            view = self._body(view) if self._left > 0 else self._gather(view)

    def _body(self, view: memoryview) -> memoryview:
        piece = view[: self._left]
        self._crc = zlib.crc32(piece, self._crc)
        self._left -= len(piece)
        if self._kind == b"IHDR" and self.size is None:
            self._ihdr += piece[: 8 - len(self._ihdr)]
            if len(self._ihdr) == 8:
                self.size = struct.unpack(">II", self._ihdr)
        return view[len(piece) :]

    def _gather(self, view: memoryview) -> memoryview:
        """Collect the next fixed-size field (signature, chunk header or CRC); act on it once
        it is whole."""
        need = len(PNG_SIGNATURE) if not self._signed else 4 if self._left == 0 else 8
        take = need - len(self._head)
        self._head += view[:take]
        if len(self._head) == need:
            field, self._head = bytes(self._head), bytearray()
            self._field(field)
        return view[take:]

    def _field(self, field: bytes) -> None:
        if not self._signed:
            if field != PNG_SIGNATURE:
                raise OutputCorrupt("the output is not a PNG image (bad signature)")
            self._signed = True
        elif self._left == 0:  # the CRC closing the current chunk
            if struct.unpack(">I", field)[0] != self._crc:
                raise OutputCorrupt(f"the PNG chunk {self._kind!r} is corrupt (CRC mismatch)")
            self._left = -1
            self.complete = self._kind == b"IEND"
        else:  # a chunk header: length and type
            length, self._kind = struct.unpack(">I4s", field)
            if length > _MAX_CHUNK:
                raise OutputCorrupt(f"the PNG chunk {self._kind!r} is corrupt (bad length)")
            self._chunks += 1
            if self._chunks == 1 and (self._kind != b"IHDR" or length != 13):
                raise OutputCorrupt("the PNG image does not start with its header (IHDR)")
            self._crc = zlib.crc32(self._kind)
            self._left = length

    def finish(self) -> None:
        if self._head and self.complete:
            raise OutputCorrupt("the output has data after the PNG end marker")
        if not self.complete:
            raise OutputCorrupt("the PNG image is incomplete (no end marker): truncated download")


class VerifyingReader(io.RawIOBase):
    """A read-only file over a byte iterator that verifies the image as it is read."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        expected_bytes: int | None,
        max_bytes: int,
        max_pixels: int,
    ) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")  # the current chunk; read from ``_offset`` on
        self._offset = 0
        self._expected = expected_bytes
        self._max = max_bytes
        self._max_pixels = max_pixels
        self._png = PngChecker()
        self._header: bytearray | None = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.width: int | None = None
        self.height: int | None = None
        self.finished = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while self._offset == len(self._pending) and not self.finished:
            self._next_chunk()
        count = min(len(buffer), len(self._pending) - self._offset)
        buffer[:count] = self._pending[self._offset : self._offset + count]
        self._offset += count
        return count

    def _next_chunk(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is None:
            self._finish()
            return
        self.size += len(chunk)
        if self.size > self._max:
            raise OutputRefused(f"the output is larger than the {self._max}-byte limit")
        self.sha256.update(chunk)
        self._png.feed(chunk)
        self._read_dimensions(chunk)
        self._pending, self._offset = memoryview(chunk), 0

    def _read_dimensions(self, chunk: bytes) -> None:
        if self._header is None:
            return
        header = self._header
        header += chunk
        if self._png.size is None:  # IHDR not complete yet
            if len(header) > _HEADER_BYTES:
                raise OutputCorrupt("the output's image header could not be read")
            return
        width, height = self._png.size
        if width * height > self._max_pixels:
            raise OutputRefused(
                f"the output declares {width}x{height} pixels, over the "
                f"{self._max_pixels}-pixel limit (IMAGEGEN_MAX_OUTPUT_PIXELS)"
            )
        try:  # Image.open parses the header lazily: no pixel buffer is allocated
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(header), formats=["PNG"]) as image:
                    self.width, self.height = image.size
            self._header = None
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
            if len(header) > _HEADER_BYTES:
                raise OutputCorrupt("the output's image header could not be read") from None

    def _finish(self) -> None:
        if self._expected is not None and self.size != self._expected:
            raise OutputCorrupt(
                f"received {self.size} bytes of the announced {self._expected}: truncated download"
            )
        self._png.finish()
        if self.width is None or self.height is None:
            raise OutputCorrupt("the output's image dimensions could not be read")
        self.finished = True
