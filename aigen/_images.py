"""Tell an image's format and pixel size from its own bytes.

Providers label what they send and what they return, and the labels are sometimes wrong,
so aigen reads the header instead: PNG's IHDR, JPEG's SOF marker, WebP's VP8/VP8L/VP8X
chunk. Only the first few hundred bytes are read (a JPEG may need to skip its metadata
segments); nothing is decoded.
"""

from __future__ import annotations

import struct

__all__ = ["SUPPORTED_MIME_TYPES", "image_size", "sniff_mime_type"]

PNG = "image/png"
JPEG = "image/jpeg"
WEBP = "image/webp"
SUPPORTED_MIME_TYPES = (PNG, JPEG, WEBP)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers that carry the frame size (all SOFn except DHT, JPG, DAC).
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def sniff_mime_type(data: bytes) -> str | None:
    """Return `image/png`, `image/jpeg` or `image/webp` from the magic bytes, else `None`."""
    if data.startswith(_PNG_SIGNATURE):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """Return `(width, height)` read from the image header, or `None` if it cannot be read."""
    mime_type = sniff_mime_type(data)
    if mime_type == PNG:
        return _png_size(data)
    if mime_type == JPEG:
        return _jpeg_size(data)
    if mime_type == WEBP:
        return _webp_size(data)
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    # The IHDR chunk must come first: 8-byte signature, 4-byte length, b"IHDR", then size.
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return (width, height) if width and height else None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    offset = 2
    length = len(data)
    while offset + 4 <= length:
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte before a marker
            offset += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length field
            offset += 2
            continue
        (segment_length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _JPEG_SOF_MARKERS:
            if offset + 9 > length:
                return None
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return (width, height) if width and height else None
        if marker == 0xDA or segment_length < 2:  # image data begins: no frame header seen
            return None
        offset += 2 + segment_length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        # Lossy: a 3-byte frame tag, the start code 9d 01 2a, then 14-bit sizes.
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        width, height = width & 0x3FFF, height & 0x3FFF
        return (width, height) if width and height else None
    if chunk == b"VP8L" and len(data) >= 25:
        # Lossless: signature byte 0x2f, then 14-bit width-1 and height-1, bit-packed.
        if data[20] != 0x2F:
            return None
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        # Extended: 24-bit canvas width-1 and height-1.
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None
