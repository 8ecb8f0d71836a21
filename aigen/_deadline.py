"""The instant the current exchange must end by: set by a driver, read at each socket step.

A `ContextVar`, so each thread and each asyncio task has its own (a task runs in a copy of
its creator's context), and one call's deadline never leaks into another's.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from contextvars import ContextVar, Token

__all__ = ["current_deadline", "exchange_deadline"]

_DEADLINE: ContextVar[float | None] = ContextVar("aigen_exchange_deadline", default=None)


def current_deadline() -> float | None:
    """The `time.monotonic()` instant the current exchange must end by, or None."""
    return _DEADLINE.get()


def exchange_deadline(at: float | None) -> AbstractContextManager[None]:
    """`with exchange_deadline(at):` caps the socket operations inside it to end by `at`.

    `at` is a `time.monotonic()` instant. Inside an enclosing deadline the earlier of the
    two holds: a nested one can shorten the time left, never extend it. `None` adds no
    deadline (the enclosing one, if any, still holds) and costs almost nothing.
    """
    # None shares one manager that does nothing: most calls set no deadline.
    return _NO_DEADLINE if at is None else _Deadline(at)


class _Deadline:
    __slots__ = ("_at", "_token")

    def __init__(self, at: float | None) -> None:
        self._at = at
        self._token: Token[float | None] | None = None

    def __enter__(self) -> None:
        at, outer = self._at, _DEADLINE.get()
        if at is not None and (outer is None or at < outer):
            self._token = _DEADLINE.set(at)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _DEADLINE.reset(self._token)
            self._token = None


_NO_DEADLINE = _Deadline(None)  # never sets a token, so one can serve every thread and task
