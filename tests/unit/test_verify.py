import hashlib
import io

import pytest
from PIL import Image

from worker.errors import OutputCorrupt
from worker.verify import VerifyingReader


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 60)).save(buffer, "PNG")
    return buffer.getvalue()


def chunked(data: bytes, size: int = 7):
    for start in range(0, len(data), size):
        yield data[start:start + size]


def drain(reader: VerifyingReader) -> bytes:
    return b"".join(iter(lambda: reader.read(5), b""))


def test_measures_hashes_and_reads_dimensions() -> None:
    data = png(300, 200)
    reader = VerifyingReader(chunked(data), expected_bytes=len(data), max_bytes=10**6)
    assert drain(reader) == data
    assert reader.finished
    assert (reader.width, reader.height) == (300, 200)
    assert reader.size == len(data)
    assert reader.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("body", "expected", "message"), [
    (png()[:-20], "full", "truncated"),
    (png()[:-20], None, "incomplete"),
    (b"<html>not found</html>", None, "not a PNG"),
    (png()[:40] + b"\x00" * 8 + png()[48:], None, "CRC mismatch"),
    (png() + b"trailing", None, "after the PNG end"),
])
def test_rejects_broken_outputs(body: bytes, expected: str | None, message: str) -> None:
    length = len(png()) if expected == "full" else None
    reader = VerifyingReader(chunked(body), expected_bytes=length, max_bytes=10**6)
    with pytest.raises(OutputCorrupt, match=message):
        drain(reader)
    assert not reader.finished


def test_size_limit() -> None:
    data = png(500, 500)
    reader = VerifyingReader(chunked(data, 1000), expected_bytes=None, max_bytes=len(data) - 1)
    with pytest.raises(OutputCorrupt, match="limit"):
        drain(reader)
