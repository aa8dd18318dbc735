"""The simulator's picture sizes and PNG rendering."""

from __future__ import annotations

import io
import itertools

import pytest
from PIL import Image

from simulator.images import (
    ASPECT_RATIOS,
    RESOLUTIONS,
    image_size,
    normalize_resolution,
    render_png,
)

DOCUMENTED_16_9 = {"1080p": (1920, 1080), "2K": (2560, 1440), "4K": (3840, 2160)}
RATIOS = [ratio for ratio in ASPECT_RATIOS if ratio != "auto"]


@pytest.mark.parametrize(("ratio", "resolution"), list(itertools.product(RATIOS, RESOLUTIONS)))
def test_size_keeps_ratio_and_pixel_count(ratio: str, resolution: str) -> None:
    width, height = image_size(ratio, resolution)
    ratio_w, ratio_h = (int(part) for part in ratio.split(":"))
    reference_w, reference_h = DOCUMENTED_16_9[resolution]

    assert width * ratio_h == height * ratio_w  # exact ratio
    assert abs(width * height / (reference_w * reference_h) - 1) < 0.02
    assert width % 8 == 0 and height % 8 == 0


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_documented_sizes(resolution: str) -> None:
    assert image_size("16:9", resolution) == DOCUMENTED_16_9[resolution]
    width, height = DOCUMENTED_16_9[resolution]
    assert image_size("9:16", resolution) == (height, width)


def test_square_1080p_is_1440_and_auto_renders_square() -> None:
    assert image_size("1:1", "1080p") == (1440, 1440)
    for resolution in RESOLUTIONS:
        assert image_size("auto", resolution) == image_size("1:1", resolution)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("1080p", "1080p"),
        ("1080P", "1080p"),
        ("2k", "2K"),
        ("4K", "4K"),
        (" 4k ", "4K"),
        ("8K", None),
        ("", None),
    ],
)
def test_resolution_in_any_case(spelling: str, canonical: str | None) -> None:
    assert normalize_resolution(spelling) == canonical


def test_unknown_sizes_raise() -> None:
    with pytest.raises(KeyError):
        image_size("5:4", "1080p")
    with pytest.raises(KeyError):
        image_size("1:1", "8K")


@pytest.mark.parametrize("noise", [False, True])
def test_png_decodes_at_exact_size(noise: bool) -> None:
    size = image_size("21:9", "1080p")

    data = render_png("a lighthouse", 42, 0, size, noise=noise)

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "PNG"
        assert picture.size == size
        picture.verify()


def test_rendering_is_deterministic_and_varies_with_inputs() -> None:
    size = (320, 180)
    first = render_png("a cat", 7, 0, size)

    assert render_png("a cat", 7, 0, size) == first
    assert render_png("a dog", 7, 0, size) != first
    assert render_png("a cat", 8, 0, size) != first
    assert render_png("a cat", 7, 1, size) != first


def test_noise_is_incompressible() -> None:
    width, height = 640, 360

    data = render_png("static", 1, 0, (width, height), noise=True)

    assert len(data) >= width * height * 3
    assert render_png("static", 1, 0, (width, height), noise=True) == data
