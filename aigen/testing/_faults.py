"""Transport faults a fake can play: resets, endless, inflating and oversized bodies.

Each function returns an ordinary outcome (`Drop`, `Situation` or `Reply`), so faults are
scripted like any other outcome and recorded the same way. They exist to test what a
client does when the connection or the body itself misbehaves, in particular that
`max_response_bytes` stops a body that is too large, endless or inflating.
"""

from __future__ import annotations

import functools
import struct
import zlib

from ._outcomes import Drop, Reply, Situation, success

__all__ = [
    "ENDLESS_LIMIT",
    "GZIP_BOMB_SIZE",
    "endless_body",
    "gzip_bomb",
    "gzip_zeros",
    "oversized",
    "reset",
]

# Above aigen's default max_response_bytes (64 MiB), so a client left at its defaults meets
# its own cap first; small enough that a client with no cap at all is not fed for long.
ENDLESS_LIMIT = 256 * 1024 * 1024
# Half a gibibyte of zeros is about 530 KB on the wire: under even a 1 MiB
# max_response_bytes, so only a limit counted after decompression can stop it.
GZIP_BOMB_SIZE = 512 * 1024 * 1024
# An endless body starts like an OpenAI image answer whose base64 never ends.
_ENDLESS_PREFIX = b'{"created": 0, "data": [{"b64_json": "'
_PADDING_OPEN = b'{"padding": "'
_PADDING_CLOSE = b'"}'
# Zeros are compressed one block at a time, each block flushed so its bytes are the same.
_BLOCK = 1024 * 1024
# A gzip member header: magic, deflate, no flags, no time, no extra flags, unknown OS.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def reset(after_bytes: int | None = None, *, delay: float = 0.0) -> Drop | Situation:
    """Reset the connection (a TCP RST: `SO_LINGER` 0, then close).

    With `after_bytes=None` the request is read and the connection reset before any
    answer; with a number, a success's headers and that many bytes of its body are sent
    first (the full length is announced), then the connection is reset mid-body. aigen
    retries either as an `APIConnectionError`.
    """
    if after_bytes is None:
        return Drop(delay, reset=True)
    if after_bytes < 0:
        raise ValueError(f"after_bytes must be 0 or more, not {after_bytes}")
    return success(reset_after=after_bytes, delay=delay)


def endless_body(*, limit: int = ENDLESS_LIMIT, delay: float = 0.0) -> Reply:
    """A 200 whose body never ends: chunked, it keeps coming until the client hangs up.

    The body opens like an image answer (`{"created": 0, "data": [{"b64_json": "`) and
    then sends `A`s in 64 KiB chunks. `limit` is a safety cap on the body bytes sent: past
    it the fake closes the connection without ending the body, so a client that never
    stops reading still ends. A client with a `max_response_bytes` below `limit` stops
    first, with a `GenerationError`; `fake.bytes_sent` shows how far the fake got.
    """
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")
    return Reply(200, _ENDLESS_PREFIX, delay=delay, endless_limit=limit)


def gzip_bomb(inflated_bytes: int = GZIP_BOMB_SIZE, *, delay: float = 0.0) -> Reply:
    """A 200 with `Content-Encoding: gzip` whose small body inflates to `inflated_bytes`.

    The body is `inflated_bytes` zeros, gzipped (about 1 KiB per MiB), with a truthful
    `content-length` for the compressed bytes: only a limit counted after decompression
    stops it. aigen raises a `GenerationError` once more than `max_response_bytes` have
    been inflated. Bombs are built once per size and cached.
    """
    if inflated_bytes < 0:
        raise ValueError(f"inflated_bytes must be 0 or more, not {inflated_bytes}")
    return Reply(
        200,
        gzip_zeros(inflated_bytes),
        {"content-encoding": "gzip"},
        delay=delay,
        content_type="application/json; charset=UTF-8",
    )


def oversized(size: int, declare_length: bool = True, *, delay: float = 0.0) -> Reply:
    """A 200 whose JSON body is `size` bytes long: `{"padding": "AAAA..."}`.

    With `declare_length=True` the size is announced in `content-length`, so a client can
    refuse the body before reading it; with `False` it is sent chunked and the size is
    only found by reading. A client that accepts the size gets a body with no image.
    """
    floor = len(_PADDING_OPEN) + len(_PADDING_CLOSE)
    if size < floor:
        raise ValueError(f"size must be at least {floor} bytes, not {size}")
    body = _PADDING_OPEN + b"A" * (size - floor) + _PADDING_CLOSE
    return Reply(200, body, delay=delay, chunked=not declare_length)


@functools.lru_cache(maxsize=8)
def gzip_zeros(size: int) -> bytes:
    """`size` zero bytes as a gzip member, built without compressing them all.

    One block of zeros is compressed and fully flushed, which makes its bytes independent
    of what came before, so the block is repeated as often as needed; the trailer's
    CRC-32 and length are computed for the whole. `gzip.decompress` gives `size` zeros.
    """
    blocks, rest = divmod(size, _BLOCK)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(_BLOCK)
    unit = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH) if blocks else b""
    tail = deflate.compress(zeros[:rest]) + deflate.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(zeros[:rest], crc)
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return b"".join((_GZIP_HEADER, unit * blocks, tail, trailer))
