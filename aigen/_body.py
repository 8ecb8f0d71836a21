"""Reading an answer's body: chunk by chunk, within the size cap and the call's deadline.

The clients hand over the bytes as they came off the wire, and aigen inflates gzip and
deflate itself, never more than the cap allows at a time: a 1 MB gzip bomb that would
inflate to gigabytes costs at most `max_response_bytes` of memory before it is refused.
"""

from __future__ import annotations

import zlib
from typing import Protocol, TypeVar

from ._errors import APITimeoutError, GenerationError

__all__ = ["ACCEPTED_ENCODINGS", "BodyReader", "too_large"]

# What aigen asks for, and so all it needs to inflate.
ACCEPTED_ENCODINGS = "gzip, deflate"

E = TypeVar("E", bound=GenerationError)


class _Call(Protocol):
    def stamp(self, error: E) -> E: ...

    def past_deadline(self) -> bool: ...


class BodyReader:
    """Collects a body chunk by chunk, stopping at the size cap or the call's deadline.

    httpx's timeouts bound each read, so a body trickling in small pieces could outlast
    the deadline; checking between chunks bounds the whole attempt. `expected` is the
    `Content-Length` (bytes on the wire), `encoding` the `Content-Encoding`.
    """

    def __init__(
        self,
        call: _Call,
        limit: int,
        expected: int | None = None,
        encoding: str = "identity",
    ) -> None:
        self._call = call
        self._limit = limit
        self._expected = expected
        self._inflater = _inflater_for(encoding)
        self._chunks: list[bytes] = []
        self._size = 0  # bytes after inflating: what the cap counts
        self._received = 0  # bytes on the wire: what Content-Length counts

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body, as it came off the wire."""
        self._received += len(chunk)
        if self._inflater is None:
            self._accept(chunk)
        else:
            self._inflate(chunk)
        complete = self._expected is not None and self._received >= self._expected
        if not complete and self._call.past_deadline():
            # An answer that has fully arrived is kept even a moment past the deadline.
            raise self._call.stamp(
                APITimeoutError("the answer was still arriving when the deadline passed")
            )

    def body(self) -> bytes:
        """Everything fed so far, inflated, as one bytes object."""
        if self._inflater is not None:
            self._accept(self._inflater.flush())
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)

    def _inflate(self, data: bytes) -> None:
        assert self._inflater is not None
        while data:
            room = self._limit - self._size + 1  # one byte more than fits proves overflow
            try:
                self._accept(self._inflater.decompress(data, room))
            except zlib.error as error:
                raise self._call.stamp(
                    GenerationError(f"could not decode the gzip or deflate answer body: {error}")
                ) from None
            data = self._inflater.unconsumed_tail

    def _accept(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._size > self._limit:
            raise self._call.stamp(too_large(self._size, self._limit))
        self._chunks.append(data)


class _DeflateInflater:
    """`deflate` is meant to be zlib-wrapped, but some servers send it raw: tell by byte 1."""

    def __init__(self) -> None:
        self._inner: zlib._Decompress | None = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            wrapped = bool(data) and data[0] & 0x0F == 8  # zlib's CM field says deflate
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        return self._inner.decompress(data, max_length)

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail if self._inner is not None else b""

    def flush(self) -> bytes:
        return self._inner.flush() if self._inner is not None else b""


def _inflater_for(encoding: str) -> zlib._Decompress | _DeflateInflater | None:
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return None
    if name in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if name == "deflate":
        return _DeflateInflater()
    raise GenerationError(
        f"the answer is encoded as {encoding!r}, which aigen did not ask for "
        f"(it asks for {ACCEPTED_ENCODINGS})"
    )


def too_large(size: int, limit: int) -> GenerationError:
    """The error for a body of `size` bytes when `limit` is the most allowed."""
    return GenerationError(
        f"the answer body is larger than max_response_bytes ({size:,} > {limit:,} bytes); "
        "raise max_response_bytes if such images are expected"
    )
