"""Time, as the engine reads it and the drivers wait on it: one object, swappable in tests.

The engine reads `monotonic()` for deadlines and timings and `time()` (wall clock, shared
between processes) for the rate limiter and HTTP dates; the drivers wait with `sleep()` or
`asleep()`. `aigen.testing.use_clock(client, FakeClock())` puts a whole client on a clock
that only moves when it sleeps.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Clock"]


@runtime_checkable
class Clock(Protocol):
    """What a client needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (deadlines, timings)."""
        ...

    def time(self) -> float:
        """Unix time in seconds (rate limits shared between processes, HTTP dates)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for `seconds` (`Client`)."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for `seconds` (`AsyncClient`)."""
        ...
