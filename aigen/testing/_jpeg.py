"""A small baseline JPEG encoder, so the fake servers can answer with real JPEGs.

Standard tables (ITU T.81 Annex K), YCbCr without subsampling, one scan. It is slow on
busy pictures but quick on what the fakes draw (a flat background with some letters):
an 8x8 block of one colour skips the DCT. Good enough for images a test looks at; not a
general-purpose encoder.
"""

from __future__ import annotations

import math
import struct

__all__ = ["encode_jpeg"]

_ZIGZAG = (
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
)  # fmt: skip
_LUMA_Q = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_Q = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *(99,) * 32,
)  # fmt: skip
# Huffman tables as (code counts per length 1..16, symbols), from Annex K.3.
_DC_LUMA = ((0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0), tuple(range(12)))
_DC_CHROMA = ((0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0), tuple(range(12)))
_AC_LUMA = (
    (0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D),
    bytes.fromhex(
        "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
        "2433627282090a161718191a25262728292a3435363738393a43444546474849"
        "4a535455565758595a636465666768696a737475767778797a83848586878889"
        "8a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5"
        "c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8"
        "f9fa"
    ),
)
_AC_CHROMA = (
    (0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77),
    bytes.fromhex(
        "000102031104052131061241510761711322328108144291a1b1c109233352f0"
        "156272d10a162434e125f11718191a262728292a35363738393a434445464748"
        "494a535455565758595a636465666768696a737475767778797a828384858687"
        "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
        "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8"
        "f9fa"
    ),
)
# cos((2x + 1) u pi / 16) scaled for the 8-point DCT, indexed [u][x].
_COS = tuple(
    tuple((math.sqrt(0.5) if u == 0 else 1.0) * 0.5 * math.cos((2 * x + 1) * u * math.pi / 16)
          for x in range(8))
    for u in range(8)
)  # fmt: skip


def encode_jpeg(width: int, height: int, rows: list[bytes], quality: int = 85) -> bytes:
    """Encode `height` rows of packed RGB bytes (`width * 3` each) as a baseline JPEG."""
    luma_q = _scaled(_LUMA_Q, quality)
    chroma_q = _scaled(_CHROMA_Q, quality)
    tables = [
        (luma_q, _codes(_DC_LUMA), _codes(_AC_LUMA)),
        (chroma_q, _codes(_DC_CHROMA), _codes(_AC_CHROMA)),
        (chroma_q, _codes(_DC_CHROMA), _codes(_AC_CHROMA)),
    ]
    writer = _BitWriter()
    previous_dc = [0, 0, 0]
    for block_y in range(0, height, 8):
        band = [rows[min(block_y + dy, height - 1)] for dy in range(8)]
        for block_x in range(0, width, 8):
            planes = _block_planes(band, block_x, width)
            for component, plane in enumerate(planes):
                quant, dc_codes, ac_codes = tables[component]
                coefficients = _quantized(plane, quant)
                previous_dc[component] = _encode_block(
                    writer, coefficients, previous_dc[component], dc_codes, ac_codes
                )
    return _headers(width, height, luma_q, chroma_q) + writer.finish() + b"\xff\xd9"


def _scaled(table: tuple[int, ...], quality: int) -> list[int]:
    factor = 5000 / quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, int((value * factor + 50) // 100))) for value in table]


def _codes(table: tuple[tuple[int, ...], tuple[int, ...] | bytes]) -> dict[int, tuple[int, int]]:
    """symbol -> (code, length) for a table given as counts per length and symbols."""
    counts, symbols = table
    codes: dict[int, tuple[int, int]] = {}
    code, index = 0, 0
    for length, count in enumerate(counts, start=1):
        for _ in range(count):
            codes[symbols[index]] = (code, length)
            code += 1
            index += 1
        code <<= 1
    return codes


def _block_planes(band: list[bytes], block_x: int, width: int) -> list[list[float]]:
    """The 8x8 block at `block_x` as level-shifted Y, Cb and Cr samples (edges repeated)."""
    start = block_x * 3
    first = band[0][start : start + 3]
    slices = [row[start : start + 24] for row in band]
    if all(piece == first * 8 for piece in slices):  # one colour: no per-pixel work
        y, cb, cr = _ycbcr(first[0], first[1], first[2])
        return [[y] * 64, [cb] * 64, [cr] * 64]
    planes: list[list[float]] = [[], [], []]
    for row in band:
        for dx in range(8):
            offset = min(block_x + dx, width - 1) * 3
            y, cb, cr = _ycbcr(row[offset], row[offset + 1], row[offset + 2])
            planes[0].append(y)
            planes[1].append(cb)
            planes[2].append(cr)
    return planes


def _ycbcr(r: int, g: int, b: int) -> tuple[float, float, float]:
    y = 0.299 * r + 0.587 * g + 0.114 * b - 128
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b
    return y, cb, cr


def _quantized(samples: list[float], quant: list[int]) -> list[int]:
    """The block's DCT coefficients, quantized, in zigzag order."""
    if samples.count(samples[0]) == 64:
        dc = round(samples[0] * 8 / quant[0])
        return [dc] + [0] * 63
    rows = [samples[i : i + 8] for i in range(0, 64, 8)]
    # Separable 2-D DCT: transform the rows, then the columns.
    row_dct = [[_dot(_COS[u], row) for u in range(8)] for row in rows]
    coefficients = [0.0] * 64
    for u in range(8):
        column = [row_dct[y][u] for y in range(8)]
        for v in range(8):
            coefficients[v * 8 + u] = _dot(_COS[v], column)
    return [round(coefficients[i] / quant[i]) for i in _ZIGZAG]


def _dot(left: tuple[float, ...], right: list[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


def _encode_block(
    writer: _BitWriter,
    coefficients: list[int],
    previous_dc: int,
    dc_codes: dict[int, tuple[int, int]],
    ac_codes: dict[int, tuple[int, int]],
) -> int:
    dc = coefficients[0]
    size, bits = _magnitude(dc - previous_dc)
    writer.write(*dc_codes[size])
    if size:
        writer.write(bits, size)
    run = 0
    for value in coefficients[1:]:
        if value == 0:
            run += 1
            continue
        while run > 15:
            writer.write(*ac_codes[0xF0])  # sixteen zeros
            run -= 16
        size, bits = _magnitude(value)
        writer.write(*ac_codes[(run << 4) | size])
        writer.write(bits, size)
        run = 0
    if run:
        writer.write(*ac_codes[0x00])  # end of block
    return dc


def _magnitude(value: int) -> tuple[int, int]:
    """JPEG's (size category, bits) for a coefficient."""
    size = abs(value).bit_length()
    bits = value if value >= 0 else value + (1 << size) - 1
    return size, bits


class _BitWriter:
    def __init__(self) -> None:
        self._out = bytearray()
        self._buffer = 0
        self._count = 0

    def write(self, code: int, length: int) -> None:
        self._buffer = (self._buffer << length) | code
        self._count += length
        while self._count >= 8:
            self._count -= 8
            byte = (self._buffer >> self._count) & 0xFF
            self._out.append(byte)
            if byte == 0xFF:
                self._out.append(0)  # byte stuffing
        self._buffer &= (1 << self._count) - 1

    def finish(self) -> bytes:
        if self._count:
            self.write((1 << (8 - self._count)) - 1, 8 - self._count)  # pad with ones
        return bytes(self._out)


def _headers(width: int, height: int, luma_q: list[int], chroma_q: list[int]) -> bytes:
    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    quant = bytes([0]) + bytes(luma_q[i] for i in _ZIGZAG)
    quant += bytes([1]) + bytes(chroma_q[i] for i in _ZIGZAG)
    frame = struct.pack(">BHHB", 8, height, width, 3)
    frame += bytes([1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1])
    huffman = b""
    for table_class_id, (counts, symbols) in (
        (0x00, _DC_LUMA),
        (0x10, _AC_LUMA),
        (0x01, _DC_CHROMA),
        (0x11, _AC_CHROMA),
    ):
        huffman += bytes([table_class_id]) + bytes(counts) + bytes(symbols)
    scan = bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return (
        b"\xff\xd8"
        + segment(0xE0, jfif)
        + segment(0xDB, quant)
        + segment(0xC0, frame)
        + segment(0xC4, huffman)
        + segment(0xDA, scan)
    )
