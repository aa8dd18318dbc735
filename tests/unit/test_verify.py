import hashlib
import io
import os
import struct
import zlib

import pytest
from PIL import Image

from worker.blobs.verify import PngChecker, VerifyingReader
from worker.core.errors import OutputCorrupt, OutputRefused


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(buffer, "PNG")
    return buffer.getvalue()


def chunked(data: bytes, size: int = 7):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def drain(reader: VerifyingReader) -> bytes:
    return b"".join(iter(lambda: reader.read(5), b""))


def test_measures_hashes_and_reads_dimensions() -> None:
    data = png(300, 200)
    reader = VerifyingReader(
        chunked(data), expected_bytes=len(data), max_bytes=10**6, max_pixels=10**8
    )
    assert drain(reader) == data
    assert reader.finished
    assert (reader.width, reader.height) == (300, 200)
    assert reader.size == len(data)
    assert reader.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("body", "expected", "message"),
    [
        (png()[:-20], "full", "truncated"),
        (png()[:-20], None, "incomplete"),
        (b"<html>not found</html>", None, "not a PNG"),
        (png()[:40] + b"\x00" * 8 + png()[48:], None, "CRC mismatch"),
        (png() + b"trailing", None, "after the PNG end"),
    ],
)
def test_rejects_broken_outputs(body: bytes, expected: str | None, message: str) -> None:
    length = len(png()) if expected == "full" else None
    reader = VerifyingReader(
        chunked(body), expected_bytes=length, max_bytes=10**6, max_pixels=10**8
    )
    with pytest.raises(OutputCorrupt, match=message):
        drain(reader)
    assert not reader.finished


def test_size_limit() -> None:
    data = png(500, 500)
    reader = VerifyingReader(
        chunked(data, 1000), expected_bytes=None, max_bytes=len(data) - 1, max_pixels=10**8
    )
    with pytest.raises(OutputRefused, match="limit"):
        drain(reader)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def one_idat_png(width: int, height: int) -> bytes:
    """A PNG whose whole picture is one IDAT chunk (some encoders write it so)."""
    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows, 0))
        + png_chunk(b"IEND", b"")
    )


def test_one_big_chunk_is_checked_as_it_streams() -> None:
    data = one_idat_png(400, 300)
    checker = PngChecker()
    for piece in chunked(data, 4096):
        checker.feed(piece)
        assert len(checker._head) <= 8  # never more than a header is held back
    checker.finish()
    reader = VerifyingReader(
        chunked(data, 4096), expected_bytes=len(data), max_bytes=10**7, max_pixels=10**8
    )
    assert drain(reader) == data and (reader.width, reader.height) == (400, 300)


def test_a_flipped_byte_deep_in_a_big_chunk_is_found() -> None:
    data = bytearray(one_idat_png(400, 300))
    data[len(data) // 2] ^= 0xFF
    reader = VerifyingReader(
        chunked(bytes(data), 4096), expected_bytes=None, max_bytes=10**7, max_pixels=10**8
    )
    with pytest.raises(OutputCorrupt, match="CRC mismatch"):
        drain(reader)


def test_an_impossible_chunk_length_is_refused_at_once() -> None:
    data = png()[:33] + struct.pack(">I", 2**31) + b"IDAT" + b"\x00" * 100
    checker = PngChecker()
    with pytest.raises(OutputCorrupt, match="bad length"):
        checker.feed(data)


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    from tests.hostile import bomb_png

    data = bomb_png(20000, 20000)
    reader = VerifyingReader(
        chunked(data, 4096), expected_bytes=len(data), max_bytes=10**8, max_pixels=4096 * 4096
    )
    with pytest.raises(OutputRefused, match="20000x20000 pixels"):
        drain(reader)
    assert reader.size <= 4096  # refused at the first chunk


def test_an_image_without_its_header_first_is_corrupt() -> None:
    data = png()
    idat = data.index(b"IDAT") - 4
    shuffled = data[:8] + data[idat:]  # the IHDR chunk left out
    reader = VerifyingReader(
        chunked(shuffled), expected_bytes=None, max_bytes=10**6, max_pixels=10**8
    )
    with pytest.raises(OutputCorrupt, match="IHDR"):
        drain(reader)
