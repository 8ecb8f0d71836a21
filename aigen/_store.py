"""Where the limiter's and the breaker's state lives, and the operations asked of it.

The core never calls a store. It describes what it needs as an operation (a small frozen
dataclass of plain values: `Reserve`, `Refund`, `Hold`, `ChangeRate`, `Admit`, `Record`)
and yields it; the client's driver runs it on the store, sync or awaited. Because an
operation is data, a store on another server (a Lua script in Redis) can carry out the
same step atomically: nothing in it is a Python closure.

A store implements the methods the operations name (`reserve`, `refund`, `hold_until`,
`change_rate` for a rate limit; `admit`, `record` for a circuit breaker), each atomic for
its key. A store meant for `AsyncClient` may add coroutine twins named with an `a` in
front (`areserve`, ...): the async driver awaits those when present, and calls the plain
ones otherwise. `MemoryStore` (aigen/_memory_store.py) is the in-process store both use
by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Generic, Literal, Protocol, TypeVar, cast, runtime_checkable

__all__ = [
    "Admit",
    "ChangeRate",
    "CircuitStore",
    "CircuitVerdict",
    "Hold",
    "RateChange",
    "RateLimitStore",
    "Record",
    "Refund",
    "Reserve",
    "StoreOp",
]

R = TypeVar("R")

CallOutcome = Literal["success", "failure", "nothing"]


@dataclass(frozen=True, slots=True)
class RateChange:
    """A new rate from the current one, as data:
    `min(ceiling, max(floor, rate * factor + step))`."""

    factor: float = 1.0
    step: float = 0.0
    floor: float = 0.0
    ceiling: float = float("inf")

    def apply(self, rate: float) -> float:
        """The rate after this change."""
        return min(self.ceiling, max(self.floor, rate * self.factor + self.step))


@dataclass(frozen=True, slots=True)
class CircuitVerdict:
    """What `admit` decided: `"go"`, `"probe"` (this call is the one probe), `"open"`
    (refused until `reopens_in` seconds pass) or `"probing"` (refused: a probe is out)."""

    decision: Literal["go", "probe", "open", "probing"]
    failures: int = 0
    reopens_in: float = 0.0


class StoreOp(Generic[R]):
    """One atomic step asked of a store; `run` and `arun` are what a driver calls."""

    method: ClassVar[str]

    def arguments(self) -> tuple[object, ...]:
        """The positional arguments of the store method, in order."""
        raise NotImplementedError

    def run(self, store: object) -> R:
        """Carry out the step on `store`, synchronously."""
        return cast(R, getattr(store, self.method)(*self.arguments()))

    async def arun(self, store: object) -> R:
        """Carry out the step on `store`, awaiting its coroutine twin when it has one."""
        twin = getattr(store, "a" + self.method, None)
        if twin is None:
            return self.run(store)
        return cast(R, await twin(*self.arguments()))


@dataclass(frozen=True, slots=True)
class Reserve(StoreOp[float]):
    """Take the next slot for `cost` units unless the wait is over `max_wait`; answer
    the wait in seconds (0: now). A wait over `max_wait` takes nothing."""

    method: ClassVar[str] = "reserve"
    key: str
    now: float
    burst: int
    default_rate: float
    max_wait: float | None = None
    cost: int = 1

    def arguments(self) -> tuple[object, ...]:
        return (self.key, self.now, self.burst, self.default_rate, self.max_wait, self.cost)


@dataclass(frozen=True, slots=True)
class Refund(StoreOp[None]):
    """Give back a slot that `Reserve` took but no request used (the call gave up)."""

    method: ClassVar[str] = "refund"
    key: str
    now: float
    default_rate: float
    cost: int = 1

    def arguments(self) -> tuple[object, ...]:
        return (self.key, self.now, self.default_rate, self.cost)


@dataclass(frozen=True, slots=True)
class Hold(StoreOp[None]):
    """Give out no slot that starts before `until`, whatever the rate becomes."""

    method: ClassVar[str] = "hold_until"
    key: str
    until: float
    default_rate: float

    def arguments(self) -> tuple[object, ...]:
        return (self.key, self.until, self.default_rate)


@dataclass(frozen=True, slots=True)
class ChangeRate(StoreOp[float]):
    """Replace the rate with `change.apply(rate)`; answer the new rate."""

    method: ClassVar[str] = "change_rate"
    key: str
    change: RateChange
    default_rate: float

    def arguments(self) -> tuple[object, ...]:
        return (self.key, self.change, self.default_rate)


@dataclass(frozen=True, slots=True)
class Admit(StoreOp[CircuitVerdict]):
    """Ask whether a call may go (see `CircuitVerdict`)."""

    method: ClassVar[str] = "admit"
    key: str
    now: float
    reset_timeout: float

    def arguments(self) -> tuple[object, ...]:
        return (self.key, self.now, self.reset_timeout)


@dataclass(frozen=True, slots=True)
class Record(StoreOp[None]):
    """Count how an admitted call ended: `"failure"` says the provider is failing,
    `"success"` that it is up, `"nothing"` that nothing was learnt (held back, cancelled)."""

    method: ClassVar[str] = "record"
    key: str
    now: float
    outcome: CallOutcome
    probe: bool
    failure_threshold: int

    def arguments(self) -> tuple[object, ...]:
        return (self.key, self.now, self.outcome, self.probe, self.failure_threshold)


@runtime_checkable
class RateLimitStore(Protocol):
    """Where a rate limiter's state lives. Each method must be atomic for its key."""

    def reserve(
        self,
        key: str,
        now: float,
        burst: int,
        default_rate: float,
        max_wait: float | None = None,
        cost: int = 1,
    ) -> float:
        """See `Reserve`."""
        ...

    def refund(self, key: str, now: float, default_rate: float, cost: int = 1) -> None:
        """See `Refund`."""
        ...

    def hold_until(self, key: str, until: float, default_rate: float) -> None:
        """See `Hold`."""
        ...

    def change_rate(self, key: str, change: RateChange, default_rate: float) -> float:
        """See `ChangeRate`."""
        ...


@runtime_checkable
class CircuitStore(Protocol):
    """Where a circuit breaker's state lives. Each method must be atomic for its key."""

    def admit(self, key: str, now: float, reset_timeout: float) -> CircuitVerdict:
        """See `Admit`."""
        ...

    def record(
        self,
        key: str,
        now: float,
        outcome: CallOutcome,
        probe: bool,
        failure_threshold: int,
    ) -> None:
        """See `Record`."""
        ...
