"""The fake servers' images: real PNGs and JPEGs, the asked size, the prompt drawn on them.

Pillow (a test-only dependency) decodes them, so a broken encoder cannot hide behind a
header that merely looks right.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from aigen._images import image_size, sniff_mime_type
from aigen.testing._render import render_image

SIZES = [(1, 1), (7, 3), (8, 8), (9, 17), (64, 32), (1024, 576), (768, 1344)]
FORMATS = ["image/png", "image/jpeg"]


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


@pytest.mark.parametrize("mime_type", FORMATS)
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_images_decode_at_the_asked_size(mime_type: str, width: int, height: int) -> None:
    data = render_image("A fox in the snow", width, height, mime_type)
    assert sniff_mime_type(data) == mime_type
    assert image_size(data) == (width, height)
    assert decode(data).size == (width, height)


def test_the_jpeg_looks_like_the_png() -> None:
    text = "A cute cartoon banana mascot, EPIC WIN! 0123456789"
    png = decode(render_image(text, 320, 200, "image/png"))
    jpeg = decode(render_image(text, 320, 200, "image/jpeg"))
    pairs = zip(png.tobytes(), jpeg.tobytes(), strict=True)
    mean_error = sum(abs(a - b) for a, b in pairs) / (320 * 200 * 3)
    assert mean_error < 4  # lossy, but the same picture


def test_the_prompt_is_drawn_in_white_on_a_colour_of_its_own() -> None:
    first = decode(render_image("A fox", 200, 100))
    second = decode(render_image("A whale", 200, 100))
    assert first.getpixel((0, 0)) != second.getpixel((0, 0))
    colours = set(first.tobytes()[i : i + 3] for i in range(0, 200 * 100 * 3, 3))
    assert bytes((255, 255, 255)) in colours  # letters
    assert len(colours) == 2  # and nothing else but the background


def test_text_too_long_to_fit_is_cut_not_overflowing() -> None:
    data = render_image("word " * 500, 64, 32)
    assert image_size(data) == (64, 32)


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 5)])
def test_a_size_that_is_no_size_is_refused(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="positive size"):
        render_image("x", width, height)


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="image/webp"):
        render_image("x", 8, 8, "image/webp")
