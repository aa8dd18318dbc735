"""Output pictures: the pixel size table and deterministic PNG rendering.

The pictures only need to be real PNGs of the right size that differ from prompt to prompt, so they
are soft gradients with a few blobs, drawn small and scaled up (a 4K picture costs well under a
second). ``noise=True`` makes incompressible pictures of realistic file size (10-25 MB at 4K) for
benchmarks of the download path.
"""

from __future__ import annotations

import hashlib
import io
import random

from PIL import Image, ImageDraw

RESOLUTIONS = ("1080p", "2K", "4K")
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "2:3", "3:2", "auto")

# 16:9 comes from the provider's docs. The other ratios keep the exact ratio, about the same pixel
# count (within 1.5 %) and sides that are multiples of 8 (16 where possible), as encoders like.
_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "1:1": {"1080p": (1440, 1440), "2K": (1920, 1920), "4K": (2880, 2880)},
    "16:9": {"1080p": (1920, 1080), "2K": (2560, 1440), "4K": (3840, 2160)},
    "9:16": {"1080p": (1080, 1920), "2K": (1440, 2560), "4K": (2160, 3840)},
    "4:3": {"1080p": (1664, 1248), "2K": (2208, 1656), "4K": (3328, 2496)},
    "3:4": {"1080p": (1248, 1664), "2K": (1656, 2208), "4K": (2496, 3328)},
    "21:9": {"1080p": (2184, 936), "2K": (2912, 1248), "4K": (4368, 1872)},
    "2:3": {"1080p": (1184, 1776), "2K": (1568, 2352), "4K": (2336, 3504)},
    "3:2": {"1080p": (1776, 1184), "2K": (2352, 1568), "4K": (3504, 2336)},
}
# The picture is drawn this many times smaller than its final size, then scaled up.
_DRAW_SCALE = 8
_BLOBS = 9


def normalize_resolution(value: str) -> str | None:
    """The canonical spelling (``1080p``, ``2K``, ``4K``) of a resolution in any case, else None."""
    by_upper = {name.upper(): name for name in RESOLUTIONS}
    return by_upper.get(value.strip().upper())


def image_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """Width and height in pixels of an output; ``auto`` renders like ``1:1``.

    Raises ``KeyError`` for an unknown ratio or resolution.
    """
    ratio = "1:1" if aspect_ratio == "auto" else aspect_ratio
    canonical = normalize_resolution(resolution)
    if canonical is None:
        raise KeyError(resolution)
    return _SIZES[ratio][canonical]


def picture_seed(prompt: str, seed: int, index: int) -> int:
    """A stable 64-bit seed for one output picture (``hash()`` is salted per process)."""
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def render_png(
    prompt: str, seed: int, index: int, size: tuple[int, int], *, noise: bool = False
) -> bytes:
    """The PNG bytes of one output; the same arguments always give the same bytes."""
    rng = random.Random(picture_seed(prompt, seed, index))
    picture = _noise(rng, size) if noise else _blobs(rng, size)
    buffer = io.BytesIO()
    # Noise does not compress; storing it raw is four times faster and the same size.
    picture.save(buffer, "PNG", compress_level=0 if noise else 1)
    return buffer.getvalue()


def _blobs(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    small = (max(size[0] // _DRAW_SCALE, 1), max(size[1] // _DRAW_SCALE, 1))
    channels = [_gradient(rng, small) for _ in range(3)]
    picture = Image.merge("RGB", channels)
    draw = ImageDraw.Draw(picture)
    short_side = min(small)
    for _ in range(_BLOBS):
        x, y = rng.randrange(small[0]), rng.randrange(small[1])
        radius = rng.randrange(max(short_side // 12, 1), max(short_side // 3, 2))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return picture.resize(size, Image.Resampling.BILINEAR)


def _gradient(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    ramp = Image.linear_gradient("L").rotate(rng.randrange(360), expand=False)
    return ramp.resize(size, Image.Resampling.BILINEAR)


def _noise(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
