"""What both drivers share: a flow stepped action by action, httpx's errors as the flow
reads them, and a body read through the reader the flow gave."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import httpx

from ._actions import Action, Flow, Send, TransportFailure
from ._body import BodyReader

__all__ = [
    "HTTPX_ERRORS",
    "CallAbandoned",
    "Stepper",
    "body_of",
    "monotonic_deadline",
    "transport_failure",
]

T = TypeVar("T")

# What httpx raises for a failed exchange, and what the flow is told it was.
HTTPX_ERRORS = (httpx.TransportError, httpx.DecodingError)


class CallAbandoned(BaseException):
    """Thrown into a flow whose caller stopped listening (a stream left early), so it
    gives back what it holds (its slot, its reservation) before the driver goes."""


def monotonic_deadline(time_left: float | None) -> float | None:
    """The instant on the real monotonic clock by which an exchange must end."""
    return None if time_left is None else time.monotonic() + time_left


def transport_failure(exc: httpx.TransportError | httpx.DecodingError) -> TransportFailure:
    """httpx's exception as the flow reads it (the core never imports httpx)."""
    if isinstance(exc, httpx.TimeoutException):
        return TransportFailure("timeout", exc)
    if isinstance(exc, httpx.TransportError):
        return TransportFailure("connection", exc)
    return TransportFailure("decode", exc)


class Stepper(Generic[T]):
    """A flow, stepped by a driver: its next action, then that action's reply or failure.

    Both drivers are this loop, the async one with `await` before `perform`::

        steps = Stepper(flow)
        while (action := steps.next()) is not None:
            try:
                steps.reply(perform(action))
            except BaseException as exc:  # the flow cleans up after anything, re-raises
                steps.fail(exc)
        result = steps.result

    httpx's errors reach the flow as a `TransportFailure`; a driver closed by its caller
    (`GeneratorExit`, a stream left early) as `CallAbandoned`, so the flow still gives
    back what it holds, after which `next()` says the flow is done.
    """

    __slots__ = ("_error", "_flow", "_reply", "abandoned", "result")

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self._reply: Any = None
        self._error: BaseException | None = None
        self.abandoned = False
        self.result: T | None = None

    def next(self) -> Action | None:
        """The flow's next action, or `None` once it has returned (see `result`)."""
        try:
            if self._error is None:
                return self._flow.send(self._reply)
            error, self._error = self._error, None
            return self._flow.throw(error)
        except StopIteration as done:
            self.result = done.value
            return None
        except BaseException:
            if self.abandoned:
                return None  # the caller has gone: nobody is left to raise to
            raise

    def reply(self, value: object) -> None:
        """What the last action gave."""
        self._reply = value

    def fail(self, exc: BaseException) -> None:
        """What the last action raised, to be thrown into the flow."""
        self._reply = None
        if isinstance(exc, HTTPX_ERRORS):
            exc = transport_failure(exc)
        elif isinstance(exc, GeneratorExit):
            self.abandoned = True
            exc = CallAbandoned()
        self._error = exc


def body_of(action: Send, response: httpx.Response, headers: Mapping[str, str]) -> BodyReader:
    """A reader for `response`'s body: holding it already when the transport handed it
    over read (httpx's `MockTransport` does), else ready to be fed from the wire."""
    if not response.is_stream_consumed:
        return action.open_body(headers)
    # httpx has already inflated it: it must not be inflated twice.
    reader = action.open_body({k: v for k, v in headers.items() if k != "content-encoding"})
    reader.feed(response.content)
    return reader
