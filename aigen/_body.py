"""Reading an answer's body: chunk by chunk, within the size cap and the call's deadline."""

from __future__ import annotations

from typing import Protocol, TypeVar

from ._errors import APITimeoutError, GenerationError

__all__ = ["BodyReader", "too_large"]

E = TypeVar("E", bound=GenerationError)


class _Call(Protocol):
    def stamp(self, error: E) -> E: ...

    def past_deadline(self) -> bool: ...


class BodyReader:
    """Collects a body chunk by chunk, stopping at the size cap or the call's deadline.

    httpx's timeouts bound each read, so a body trickling in small pieces could outlast
    the deadline; checking between chunks bounds the whole attempt.
    """

    def __init__(self, call: _Call, limit: int, expected: int | None = None) -> None:
        self._call = call
        self._limit = limit
        self._expected = expected
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the (decompressed) body."""
        self._size += len(chunk)
        if self._size > self._limit:
            raise self._call.stamp(too_large(self._size, self._limit))
        complete = self._expected is not None and self._size >= self._expected
        if not complete and self._call.past_deadline():
            # An answer that has fully arrived is kept even a moment past the deadline.
            raise self._call.stamp(
                APITimeoutError("the answer was still arriving when the deadline passed")
            )
        self._chunks.append(chunk)

    def body(self) -> bytes:
        """Everything fed so far, as one bytes object."""
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)


def too_large(size: int, limit: int) -> GenerationError:
    """The error for a body of `size` bytes when `limit` is the most allowed."""
    return GenerationError(
        f"the answer body is larger than max_response_bytes ({size:,} > {limit:,} bytes); "
        "raise max_response_bytes if such images are expected"
    )
