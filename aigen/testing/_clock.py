"""A clock for tests: time stands still until the code under test sleeps.

`use_clock(client, clock)` is the one switch: the client's deadlines, timings, rate
limiter and circuit breaker read `clock`, and every wait (a backoff, a server's hint, a
limiter's slot) is a `clock.sleep()` that moves it forward at once, so a test of a
30-second `Retry-After` runs in microseconds and can assert the waits::

    from aigen import Client
    from aigen.testing import FakeClock, FakeGemini, rate_limited, success, use_clock

    clock = FakeClock()
    with FakeGemini(wall_clock=clock.time) as fake, Client(**fake.client_options) as client:
        use_clock(client, clock)
        fake.script(rate_limited(30), success())
        client.generate("a fox")
        assert clock.sleeps == [30.0]
"""

from __future__ import annotations

from aigen._clock import Clock

__all__ = ["FakeClock", "use_clock"]


class FakeClock:
    """A `Clock` that only moves when slept on (or `advance()`d); `sleeps` lists each wait.

    One value serves as both the monotonic and the wall clock; it starts at `start`
    (Unix seconds, mid-2025 by default, so HTTP dates in hints make sense).
    """

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now}, {len(self.sleeps)} sleep(s))"

    def monotonic(self) -> float:
        """The current fake time."""
        return self.now

    def time(self) -> float:
        """The current fake time, as Unix seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward without counting a sleep (time passing elsewhere)."""
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the wait and move time forward by it, at once."""
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        """`sleep`, for `AsyncClient`: returns at once, without yielding to the loop."""
        self.sleep(seconds)


def use_clock(client: object, clock: Clock) -> None:
    """Put `client` (a `Client` or an `AsyncClient`) on `clock` for everything it times
    and waits on. Meant for tests; `clock` may be a `FakeClock` or any `Clock`."""
    from aigen._client import BaseClient

    if not isinstance(client, BaseClient):
        raise TypeError(f"use_clock() takes a Client or an AsyncClient, not {client!r}")
    if not isinstance(clock, Clock):
        raise TypeError(
            f"{clock!r} is not a Clock: it needs monotonic(), time(), sleep() and asleep()"
        )
    client._engine.clock = clock
