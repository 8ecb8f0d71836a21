"""The actions a call's flow asks its client to carry out: the seam between core and I/O.

A flow is a generator (`Flow[T]`): it yields an action, the client's driver performs it
and sends back the reply, and at the end the flow returns its result or raises. This is
the shape of httpx's `Auth.auth_flow`, applied to a whole call::

    response = yield Send(request, ...)     # reply: HttpResponse, body read to the end
    head = yield OpenStream(request, ...)   # reply: StreamHead; the body stays open
    chunk = yield ReadChunk(time_left)      # reply: the next bytes, b"" at the end
    yield Sleep(1.5)                        # reply: None
    wait = yield AskStore(store, op)        # reply: what the store operation returned
    free = yield TakeSlot(timeout)          # reply: True if a max_concurrency slot was got
    yield ReturnSlot()                      # reply: None
    yield Emit(event)                       # reply: None; the event reaches the caller
    yield Notify(event)                     # reply: None; the client's hook is called

Actions are small slotted dataclasses, made anew for each step and never changed after
(not frozen: a frozen dataclass costs four times as much to make, on every step of every
call). Each action names its `verb`: the driver carries it out with its method `_do_<verb>`.
A failure while performing an action is thrown back into the flow at its `yield`:
httpx's errors as a `TransportFailure` (so the core never imports httpx), anything
else (a cancellation, KeyboardInterrupt) as it is, so the flow can clean up (return its
slot, refund a reservation) and let it go on.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from ._body import BodyReader
from ._http import HttpRequest
from ._store import StoreOp

__all__ = [
    "Action",
    "AskStore",
    "Done",
    "Emit",
    "Flow",
    "Notify",
    "OpenStream",
    "ReadChunk",
    "ReturnSlot",
    "Send",
    "Sleep",
    "StreamHead",
    "TakeSlot",
    "TransportFailure",
]

T = TypeVar("T")


@dataclass(slots=True)
class Send:
    """Send `request` and read its whole body through the reader `open_body` makes from
    the answer's headers. `time_left` (seconds) bounds the exchange, headers included."""

    verb: ClassVar[str] = "send"

    request: HttpRequest
    time_left: float | None
    open_body: Callable[[Mapping[str, str]], BodyReader]


@dataclass(slots=True)
class OpenStream:
    """Send `request` and answer with its `StreamHead`; the body is then read with
    `ReadChunk`, and closed by the driver when the flow ends or opens another."""

    verb: ClassVar[str] = "open_stream"

    request: HttpRequest
    time_left: float | None


@dataclass(slots=True)
class StreamHead:
    """The status and lower-cased headers of an answer whose body is still to come."""

    status_code: int
    headers: Mapping[str, str]


@dataclass(slots=True)
class ReadChunk:
    """Read the open stream's next bytes as they came off the wire (b"" at the end),
    within `time_left` seconds."""

    verb: ClassVar[str] = "read_chunk"

    time_left: float | None = None


@dataclass(slots=True)
class Sleep:
    """Wait `seconds` (a backoff, a limiter's slot, a poll interval)."""

    verb: ClassVar[str] = "sleep"

    seconds: float


@dataclass(slots=True)
class AskStore:
    """Run one store operation on `store` (sync, or awaited by the async driver)."""

    verb: ClassVar[str] = "ask_store"

    store: object
    op: StoreOp[Any]


@dataclass(slots=True)
class TakeSlot:
    """Take one of the client's `max_concurrency` slots, waiting at most `timeout`
    seconds (`None`: as long as it takes); the reply says whether one was taken."""

    verb: ClassVar[str] = "take_slot"

    timeout: float | None


@dataclass(slots=True)
class ReturnSlot:
    """Give back the slot `TakeSlot` took."""

    verb: ClassVar[str] = "return_slot"


@dataclass(slots=True)
class Emit:
    """Hand `event` to the caller (a partial image, a progress report)."""

    verb: ClassVar[str] = "emit"

    event: object


@dataclass(slots=True)
class Notify:
    """Call the client's hook for `event` (an `AttemptEvent`, `RetryEvent`, ...); a hook
    that raises is logged, never thrown into the flow."""

    verb: ClassVar[str] = "notify"

    event: object


@dataclass(slots=True)
class Done(Generic[T]):
    """The last thing a driver yields: what the flow returned."""

    value: T


Action = Send | OpenStream | ReadChunk | Sleep | AskStore | TakeSlot | ReturnSlot | Emit | Notify
Flow = Generator[Action, Any, T]


class TransportFailure(Exception):
    """What the driver throws into the flow when an exchange fails below HTTP: a
    `"timeout"`, a `"connection"` that failed or broke, or a body that would not
    `"decode"`. `cause` is the HTTP library's own exception."""

    def __init__(self, kind: Literal["timeout", "connection", "decode"], cause: BaseException):
        super().__init__(kind, cause)
        self.kind = kind
        self.cause = cause
