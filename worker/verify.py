"""Streaming verification of a downloaded image: hash, size, PNG structure and dimensions.

:class:`VerifyingReader` wraps the download's byte iterator as a file object for the uploader.
It hashes and measures on the way and checks the PNG chunk by chunk (signature, CRCs, IEND),
so a short, corrupt or mislabelled body raises before the upload completes: a partial object
is never committed. Pillow reads the dimensions from the header; the pixels are never decoded,
so memory stays flat whatever the image size.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from collections.abc import Iterator

from PIL import Image, UnidentifiedImageError

from worker.errors import OutputCorrupt

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEADER_BYTES = 64 * 1024  # Pillow finds the size in the first few bytes; stop feeding after


class PngChecker:
    """Incremental PNG structure check: signature, every chunk's CRC, and a final IEND."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._signed = False
        self.complete = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if not self._signed:
            if len(self._buffer) < len(PNG_SIGNATURE):
                return
            if bytes(self._buffer[:8]) != PNG_SIGNATURE:
                raise OutputCorrupt("the output is not a PNG image (bad signature)")
            del self._buffer[:8]
            self._signed = True
        self._consume_chunks()

    def _consume_chunks(self) -> None:
        while len(self._buffer) >= 12:
            if self.complete:
                raise OutputCorrupt("the output has data after the PNG end marker")
            length, kind = struct.unpack(">I4s", self._buffer[:8])
            if len(self._buffer) < 12 + length:
                return
            body = bytes(self._buffer[4:8 + length])
            (crc,) = struct.unpack(">I", self._buffer[8 + length:12 + length])
            if zlib.crc32(body) != crc:
                raise OutputCorrupt(f"the PNG chunk {kind!r} is corrupt (CRC mismatch)")
            del self._buffer[:12 + length]
            self.complete = kind == b"IEND"

    def finish(self) -> None:
        if self.complete and self._buffer:
            raise OutputCorrupt("the output has data after the PNG end marker")
        if not self.complete:
            raise OutputCorrupt("the PNG image is incomplete (no end marker): truncated download")


class VerifyingReader(io.RawIOBase):
    """A read-only file over a byte iterator that verifies the image as it is read."""

    def __init__(self, chunks: Iterator[bytes], *, expected_bytes: int | None,
                 max_bytes: int) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = b""
        self._expected = expected_bytes
        self._max = max_bytes
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
        while not self._pending and not self.finished:
            self._next_chunk()
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _next_chunk(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is None:
            self._finish()
            return
        self.size += len(chunk)
        if self.size > self._max:
            raise OutputCorrupt(f"the output is larger than the {self._max}-byte limit")
        self.sha256.update(chunk)
        self._png.feed(chunk)
        self._read_dimensions(chunk)
        self._pending = chunk

    def _read_dimensions(self, chunk: bytes) -> None:
        if self._header is None:
            return
        header = self._header
        header += chunk
        try:  # Image.open parses the header lazily: no pixel buffer is allocated
            with Image.open(io.BytesIO(header), formats=["PNG"]) as image:
                self.width, self.height = image.size
            self._header = None
        except (UnidentifiedImageError, OSError, SyntaxError):
            if len(header) > _HEADER_BYTES:
                raise OutputCorrupt("the output's image header could not be read") from None

    def _finish(self) -> None:
        if self._expected is not None and self.size != self._expected:
            raise OutputCorrupt(f"received {self.size} bytes of the announced {self._expected}: "
                                "truncated download")
        self._png.finish()
        if self.width is None or self.height is None:
            raise OutputCorrupt("the output's image dimensions could not be read")
        self.finished = True
