"""Tiny but real image files for tests, made in memory."""

from __future__ import annotations

import struct
import zlib


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def jpeg(width: int = 8, height: int = 8, *, app_segments: int = 1) -> bytes:
    """A JPEG header (SOI, APPn segments, SOF0) with the given frame size, then EOI.

    Enough for format and size detection, which is all aigen reads.
    """
    data = b"\xff\xd8"
    for n in range(app_segments):
        payload = b"JFIF\x00" + bytes(9) if n == 0 else b"Exif\x00\x00" + bytes(40)
        data += b"\xff" + bytes([0xE0 + n]) + struct.pack(">H", len(payload) + 2) + payload
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    data += b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof
    return data + b"\xff\xd9"


def webp_lossy(width: int = 8, height: int = 8) -> bytes:
    """A WebP 'VP8 ' header with the given size."""
    frame = b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(10)
    chunk = b"VP8 " + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_lossless(width: int = 8, height: int = 8) -> bytes:
    """A WebP 'VP8L' header with the given size."""
    bits = (width - 1) | ((height - 1) << 14)
    frame = b"\x2f" + bits.to_bytes(4, "little") + bytes(8)
    chunk = b"VP8L" + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_extended(width: int = 8, height: int = 8) -> bytes:
    """A WebP 'VP8X' header with the given canvas size."""
    frame = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(frame)) + frame
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk
