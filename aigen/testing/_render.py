"""Real PNG and JPEG images that show their prompt, made with the standard library alone.

The fake servers answer with these, so a person opening the file sees which prompt made
it, and at the size that was asked for. The background colour comes from the prompt, so
two prompts never look alike at a glance.
"""

from __future__ import annotations

import hashlib
import struct
import textwrap
import zlib

from ._font import GLYPH_HEIGHT, GLYPH_WIDTH, glyph
from ._jpeg import encode_jpeg

__all__ = ["render_image", "render_jpeg", "render_png"]

_INK = bytes((255, 255, 255))
_SHADOW = bytes((20, 20, 20))


def render_image(text: str, width: int, height: int, mime_type: str = "image/png") -> bytes:
    """A `width` x `height` image of `mime_type` (PNG or JPEG) with `text` written on it."""
    if mime_type == "image/png":
        return render_png(text, width, height)
    if mime_type == "image/jpeg":
        return render_jpeg(text, width, height)
    raise ValueError(f"the fakes draw image/png and image/jpeg, not {mime_type!r}")


def render_png(text: str, width: int = 512, height: int = 512) -> bytes:
    """A `width` x `height` RGB PNG with `text` written on it, wrapped to fit."""
    return _encode_png(width, height, _draw(text, width, height))


def render_jpeg(text: str, width: int = 512, height: int = 512) -> bytes:
    """A `width` x `height` baseline JPEG with `text` written on it, wrapped to fit."""
    return encode_jpeg(width, height, _draw(text, width, height))


def _draw(text: str, width: int, height: int) -> list[bytes]:
    """The picture as rows of packed RGB bytes."""
    if width < 1 or height < 1:
        raise ValueError(f"an image needs a positive size, got {width}x{height}")
    background = _colour_of(text)
    scale = max(1, min(width, height) // 96)
    cell_w, cell_h = (GLYPH_WIDTH + 1) * scale, (GLYPH_HEIGHT + 2) * scale
    margin = scale * 2
    columns = max(1, (width - 2 * margin) // cell_w)
    max_lines = max(1, (height - 2 * margin) // cell_h)
    # Only what can show is wrapped: a 10 MB prompt must not keep the fake's thread busy.
    fits = columns * (max_lines + 1)
    shown = " ".join(text[: fits * 2].split())
    lines = textwrap.wrap(shown[:fits] if len(text) <= fits * 2 else shown[:fits] + " ...", columns)
    lines = lines or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, columns - 3)] + "..."

    blank_row = background * width
    rows: list[bytes] = []
    top = max(0, (height - len(lines) * cell_h) // 2)
    rows.extend([blank_row] * top)
    for line in lines:
        left = max(0, (width - len(line) * cell_w) // 2)
        for glyph_row in range(GLYPH_HEIGHT + 2):
            if glyph_row >= GLYPH_HEIGHT:
                rows.extend([blank_row] * scale)  # spacing between lines
                continue
            row = _text_row(line, glyph_row, scale, background)
            row = (background * left + row)[: width * 3]
            row += background * (width - len(row) // 3)
            rows.extend([row] * scale)
    rows = rows[:height]
    rows.extend([blank_row] * (height - len(rows)))
    return rows


def _text_row(line: str, glyph_row: int, scale: int, background: bytes) -> bytes:
    ink, paper = _INK * scale, background * scale
    pieces = []
    for char in line:
        pattern = glyph(char)[glyph_row]
        pieces.append(b"".join(ink if dot == "#" else paper for dot in pattern))
        pieces.append(paper)  # one column between letters
    return b"".join(pieces)


def _colour_of(text: str) -> bytes:
    """A mid-dark colour picked from the text, so white letters stay readable."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return bytes(40 + value % 120 for value in digest[:3])


def _encode_png(width: int, height: int, rows: list[bytes]) -> bytes:
    raw = b"".join(b"\x00" + row for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
