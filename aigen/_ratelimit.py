"""Client-side rate limiting: wait your turn before sending, instead of collecting 429s.

The limiter is a GCRA (a token bucket kept as one timestamp, the "theoretical arrival
time"): each attempt reserves the next free slot and is told how long to wait for it, so
every thread and task of a client queues fairly without a background thread. The rate
adapts: a 429 halves it, each success adds back a twentieth of the configured rate
(additive increase, multiplicative decrease), and the provider's own rate-limit headers
cap it or hold sending until their reset. The state lives behind `RateLimitStore`, so a
store shared between processes can replace the in-memory one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ._models import RateLimitInfo

__all__ = ["MemoryRateLimitStore", "RateLimit", "RateLimitStore", "RateLimiter"]

# How much one 429 cuts the rate, and how much of the configured rate a success adds back.
DECREASE_FACTOR = 0.5
INCREASE_FRACTION = 0.05
# The rate never falls below this share of the configured one, so a burst of 429s cannot
# stall a client for minutes on its own.
FLOOR_FRACTION = 0.05


class RateLimit(BaseModel):
    """How fast a client may send (pass as `rate_limit=`).

    - `requests_per_minute`: the steady rate, shared by every call of the client.
    - `burst`: how many requests may go at once after a quiet spell.
    - `adaptive`: lower the rate on 429s and raise it back on successes.
    - `store`: where the state lives; one `MemoryRateLimitStore` per client by default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    requests_per_minute: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)
    adaptive: bool = True
    store: RateLimitStore | None = Field(default=None, repr=False)


@dataclass
class BucketState:
    """What the store keeps per key: the next free slot, the rate, and any hold."""

    arrival: float
    requests_per_minute: float
    held_until: float = 0.0


@runtime_checkable
class RateLimitStore(Protocol):
    """Where limiter state lives. Each method must be atomic for its key."""

    def reserve(
        self,
        key: str,
        now: float,
        burst: int,
        default_rate: float,
        max_wait: float | None = None,
    ) -> float:
        """Return the seconds to wait for the next slot (0: now) and take that slot,
        unless the wait is longer than `max_wait`: then leave it for others."""
        ...

    def hold_until(self, key: str, until: float, default_rate: float) -> None:
        """Give out no slot that starts before `until`, whatever the rate becomes."""
        ...

    def update_rate(self, key: str, change: Callable[[float], float], default_rate: float) -> float:
        """Replace the rate with `change(rate)`; return the new rate."""
        ...


class MemoryRateLimitStore:
    """The in-process store: a dict behind a lock, shared by threads and tasks alike."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, BucketState] = {}

    def _bucket(self, key: str, now: float, default_rate: float) -> BucketState:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = BucketState(now, default_rate)
        return bucket

    def reserve(
        self,
        key: str,
        now: float,
        burst: int,
        default_rate: float,
        max_wait: float | None = None,
    ) -> float:
        with self._lock:
            bucket = self._bucket(key, now, default_rate)
            interval = 60.0 / bucket.requests_per_minute
            tolerance = interval * (burst - 1)
            start = max(now, bucket.held_until)
            arrival = max(bucket.arrival, start)
            wait = max(0.0, arrival - tolerance - now, start - now)
            if max_wait is None or wait <= max_wait:
                bucket.arrival = arrival + interval
            return wait

    def hold_until(self, key: str, until: float, default_rate: float) -> None:
        with self._lock:
            bucket = self._bucket(key, until, default_rate)
            bucket.held_until = max(bucket.held_until, until)

    def update_rate(self, key: str, change: Callable[[float], float], default_rate: float) -> float:
        with self._lock:
            bucket = self._bucket(key, 0.0, default_rate)
            bucket.requests_per_minute = change(bucket.requests_per_minute)
            return bucket.requests_per_minute


class RateLimiter:
    """One client's limiter: reserves slots and adapts the rate; `clock` is wall time."""

    def __init__(
        self,
        settings: RateLimit,
        *,
        key: str,
        clock: Callable[[], float],
        max_hold: float = math.inf,
    ) -> None:
        self.settings = settings
        self.key = key
        self.store: RateLimitStore = settings.store or MemoryRateLimitStore()
        self._clock = clock
        self._ceiling = settings.requests_per_minute
        # A server wait longer than this makes its call give up (RetryPolicy's
        # max_retry_after); holding every later call for it would stall the client.
        self._max_hold = max_hold

    def reserve(self, max_wait: float | None = None) -> float:
        """Seconds to wait before the next attempt may be sent.

        When that is more than `max_wait`, the slot is not taken: a call that gives up
        costs the others nothing.
        """
        return self.store.reserve(
            self.key, self._clock(), self.settings.burst, self._ceiling, max_wait
        )

    def succeeded(self, info: RateLimitInfo | None) -> None:
        """An attempt got an answer: raise the rate a step and heed the headers."""
        self._heed(info)
        if self.settings.adaptive:
            step = self.settings.requests_per_minute * INCREASE_FRACTION
            self.store.update_rate(
                self.key, lambda rate: min(self._ceiling, rate + step), self._ceiling
            )

    def rate_limited(self, retry_after: float | None, info: RateLimitInfo | None) -> None:
        """The provider said 429: halve the rate, and send nothing before its hint."""
        self._heed(info)
        if retry_after is not None:
            self._hold(retry_after)
        if self.settings.adaptive:
            floor = min(self._ceiling, self.settings.requests_per_minute * FLOOR_FRACTION)
            self.store.update_rate(
                self.key,
                lambda rate: min(self._ceiling, max(floor, rate * DECREASE_FACTOR)),
                self._ceiling,
            )

    def rate(self) -> float:
        """The current rate, in requests per minute."""
        return self.store.update_rate(self.key, lambda rate: rate, self._ceiling)

    def _heed(self, info: RateLimitInfo | None) -> None:
        if info is None:
            return
        if info.limit_requests is not None and 0 < info.limit_requests < self._ceiling:
            # The server's own per-minute limit is lower than ours: it wins.
            self._ceiling = float(info.limit_requests)
            self.store.update_rate(self.key, lambda rate: min(rate, self._ceiling), self._ceiling)
        if info.remaining_requests == 0 and info.reset_requests is not None:
            self._hold(info.reset_requests)

    def _hold(self, seconds: float) -> None:
        if seconds <= self._max_hold:
            self.store.hold_until(self.key, self._clock() + seconds, self._ceiling)
