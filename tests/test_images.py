"""Format and pixel size from an image's own bytes (`aigen._images`), never from a label."""

from __future__ import annotations

import random
import struct

import pytest

from aigen._images import image_size, sniff_mime_type

from .images import jpeg, png, webp_extended, webp_lossless, webp_lossy


def segment(marker: int, payload: bytes) -> bytes:
    """One JPEG marker segment: FF, marker, big-endian length (itself included), payload."""
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def sof(marker: int, width: int, height: int) -> bytes:
    return segment(marker, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")


SOI = b"\xff\xd8"
EOI = b"\xff\xd9"

VALID: list[tuple[bytes, str, tuple[int, int]]] = [
    (png(1, 1), "image/png", (1, 1)),
    (png(300, 200), "image/png", (300, 200)),
    (jpeg(1024, 768), "image/jpeg", (1024, 768)),
    (jpeg(7, 5, app_segments=0), "image/jpeg", (7, 5)),
    (jpeg(1920, 1080, app_segments=4), "image/jpeg", (1920, 1080)),
    (webp_lossy(640, 480), "image/webp", (640, 480)),
    (webp_lossy(16383, 1), "image/webp", (16383, 1)),
    (webp_lossless(1, 1), "image/webp", (1, 1)),
    (webp_lossless(16384, 16384), "image/webp", (16384, 16384)),
    (webp_lossless(4000, 3), "image/webp", (4000, 3)),
    (webp_extended(5000, 3000), "image/webp", (5000, 3000)),
    (webp_extended(1, 1), "image/webp", (1, 1)),
]


@pytest.mark.parametrize(
    ("data", "mime_type", "size"), VALID, ids=[f"{m}-{w}x{h}" for _, m, (w, h) in VALID]
)
def test_format_and_size(data: bytes, mime_type: str, size: tuple[int, int]) -> None:
    assert sniff_mime_type(data) == mime_type
    assert image_size(data) == size


@pytest.mark.parametrize(
    ("data", "size"),
    [
        # Several APPn segments (JFIF, Exif, ...) before the frame header.
        (SOI + segment(0xE0, b"JFIF\x00" + bytes(9)) + segment(0xE1, bytes(300)), None),
        (
            SOI
            + segment(0xE0, b"JFIF\x00" + bytes(9))
            + segment(0xE1, b"Exif\x00\x00" + bytes(1000))
            + segment(0xE2, b"ICC_PROFILE\x00" + bytes(500))
            + segment(0xED, bytes(40))
            + segment(0xFE, b"a comment")
            + sof(0xC0, 400, 300)
            + EOI,
            (400, 300),
        ),
        # Fill bytes (any number of FF) may precede a marker.
        (SOI + b"\xff\xff\xff" + sof(0xC0, 64, 48) + EOI, (64, 48)),
        (SOI + segment(0xE0, bytes(14)) + b"\xff\xff" + sof(0xC0, 65, 49) + EOI, (65, 49)),
        # Huffman (C4), arithmetic-coding (CC) and quantization tables look like SOFn but
        # are not frame headers; the real frame comes after them.
        (
            SOI
            + segment(0xDB, bytes(65))
            + segment(0xC4, bytes(30))
            + segment(0xCC, bytes(2))
            + sof(0xC0, 320, 240)
            + EOI,
            (320, 240),
        ),
        # Progressive and other SOF kinds carry the size the same way.
        (SOI + sof(0xC2, 800, 600) + EOI, (800, 600)),
        (SOI + sof(0xC1, 801, 601) + EOI, (801, 601)),
        # Scan data before any frame header: no size to read.
        (SOI + segment(0xDA, bytes(10)) + bytes(50) + EOI, None),
        # A frame that says 0 pixels wide is not a readable image.
        (SOI + sof(0xC0, 0, 10) + EOI, None),
    ],
)
def test_jpeg_segments(data: bytes, size: tuple[int, int] | None) -> None:
    assert sniff_mime_type(data) == "image/jpeg"
    assert image_size(data) == size


def test_lossy_webp_ignores_the_scale_bits() -> None:
    # The top two bits of each 16-bit size are an upscaling hint, not part of the size.
    assert image_size(webp_lossy(640 | 0x4000, 480 | 0xC000)) == (640, 480)


@pytest.mark.parametrize(
    "data",
    [
        png(300, 200),
        jpeg(1024, 768, app_segments=3),
        webp_lossy(),
        webp_lossless(),
        webp_extended(),
    ],
    ids=["png", "jpeg", "webp-vp8", "webp-vp8l", "webp-vp8x"],
)
def test_truncated_headers_have_no_size(data: bytes) -> None:
    full = image_size(data)
    assert full is not None
    # Every prefix either still holds the whole header (same size) or yields None.
    for end in range(len(data)):
        assert image_size(data[:end]) in (None, full)
    assert image_size(data[:12]) is None
    assert image_size(data[:3]) is None


def test_truncated_jpeg_before_its_frame_header() -> None:
    data = jpeg(1024, 768, app_segments=2)
    frame_at = data.index(b"\xff\xc0")
    for end in range(frame_at + 9):
        assert image_size(data[:end]) is None, end


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG",
        b"hello, world: plain text, not an image",
        b"GIF89a\x10\x00\x10\x00\x80\x00\x00",
        b"BM6\x00\x00\x00\x00\x00\x00\x006\x00\x00\x00(\x00\x00\x00",
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00",
        b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"\xff\xd8",  # JPEG needs a third FF
        bytes(64),
    ],
)
def test_garbage_is_no_image(data: bytes) -> None:
    assert sniff_mime_type(data) is None
    assert image_size(data) is None


@pytest.mark.parametrize(
    "data",
    [
        png(0, 10),  # zero width
        png(10, 10)[:12] + b"IDAT" + png(10, 10)[16:],  # IHDR not first
        b"\xff\xd8\xff" + bytes(40),  # JPEG magic, then no marker
        SOI + b"\xff\xe0\x00\x01" + bytes(20),  # segment length below its own 2 bytes
        SOI + b"\xff\xe0\xff\xff" + bytes(20),  # segment running past the end
        b"RIFF\x20\x00\x00\x00WEBPABCD" + bytes(20),  # unknown WebP chunk
        webp_lossy()[:23] + b"\x00\x00\x00" + webp_lossy()[26:],  # bad VP8 start code
        webp_lossless()[:20] + b"\x00" + webp_lossless()[21:],  # bad VP8L signature
    ],
)
def test_right_magic_but_unreadable_header_has_no_size(data: bytes) -> None:
    assert sniff_mime_type(data) is not None
    assert image_size(data) is None


@pytest.mark.parametrize(
    "data",
    [png(33, 17), jpeg(33, 17, app_segments=3), webp_lossy(33, 17), webp_extended(33, 17)],
    ids=["png", "jpeg", "webp-vp8", "webp-vp8x"],
)
def test_corrupted_bytes_never_raise(data: bytes) -> None:
    rng = random.Random(1234)
    for _ in range(2000):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        size = image_size(bytes(damaged))
        assert size is None or (size[0] > 0 and size[1] > 0)
