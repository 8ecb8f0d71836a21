"""Client-side rate limiting: wait your turn before sending, instead of collecting 429s.

The limiter is a GCRA (a token bucket kept as one timestamp, the "theoretical arrival
time"): each attempt reserves the next free slot and is told how long to wait for it, so
every thread and task of a client queues fairly without a background thread. The rate
adapts: a 429 halves it, each success adds back a twentieth of the configured rate
(additive increase, multiplicative decrease), and the provider's own rate-limit headers
cap it or hold sending until their reset.

`RateLimiter` only decides: it returns the store operations (aigen/_store.py) that carry
its decisions out, and the call's flow yields them to the client's driver.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from ._memory_store import MemoryStore
from ._models import RateLimitInfo
from ._store import ChangeRate, Hold, RateChange, RateLimitStore, Refund, Reserve

__all__ = ["MemoryRateLimitStore", "RateLimit", "RateLimitStore", "RateLimiter"]

# How much one 429 cuts the rate, and how much of the configured rate a success adds back.
DECREASE_FACTOR = 0.5
INCREASE_FRACTION = 0.05
# The rate never falls below this share of the configured one, so a burst of 429s cannot
# stall a client for minutes on its own.
FLOOR_FRACTION = 0.05

# The in-process store's older name, kept for code written against it.
MemoryRateLimitStore = MemoryStore


class RateLimit(BaseModel):
    """How fast a client may send (pass as `rate_limit=`).

    - `requests_per_minute`: the steady rate, shared by every call of the client.
    - `burst`: how many requests may go at once after a quiet spell.
    - `adaptive`: lower the rate on 429s and raise it back on successes.
    - `store`: where the state lives; one `MemoryStore` per client by default, or a
      `aigen.redis.RedisStore` to share one quota between processes.
    - `key`: the name of the bucket in the store. By default it is made of the provider,
      the client's default model, a hash of the API key and the base URL, so clients
      (and processes) with the same ones share a bucket; name one to choose yourself.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    requests_per_minute: float = Field(gt=0, strict=True, allow_inf_nan=False)
    burst: int = Field(default=1, ge=1, strict=True)
    adaptive: bool = Field(default=True, strict=True)
    store: RateLimitStore | None = Field(default=None, repr=False)
    key: str | None = Field(default=None, min_length=1)


class RateLimiter:
    """One client's limiter: the store operations that reserve slots and adapt the rate.

    Every method takes `now` (wall-clock seconds, shared by processes that share a store)
    and returns operations; nothing here touches the store.
    """

    def __init__(self, settings: RateLimit, *, key: str, max_hold: float = math.inf) -> None:
        self.settings = settings
        self.key = settings.key or key
        self.store: RateLimitStore = settings.store or MemoryStore()
        self._ceiling = settings.requests_per_minute
        # A server wait longer than this makes its call give up (RetryPolicy's
        # max_retry_after); holding every later call for it would stall the client.
        self._max_hold = max_hold

    def reserve(self, now: float, max_wait: float | None = None, cost: int = 1) -> Reserve:
        """The slot for the next attempt; a wait over `max_wait` takes no slot."""
        return Reserve(self.key, now, self.settings.burst, self._ceiling, max_wait, cost)

    def refund(self, now: float, cost: int = 1) -> Refund:
        """Give back a reserved slot that no request used."""
        return Refund(self.key, now, self._ceiling, cost)

    def succeeded(self, now: float, info: RateLimitInfo | None) -> list[Hold | ChangeRate]:
        """An attempt got an answer: raise the rate a step and heed the headers."""
        ops = self._heed(now, info)
        if self.settings.adaptive:
            step = self.settings.requests_per_minute * INCREASE_FRACTION
            ops.append(self._change(RateChange(step=step, ceiling=self._ceiling)))
        return ops

    def rate_limited(
        self, now: float, retry_after: float | None, info: RateLimitInfo | None
    ) -> list[Hold | ChangeRate]:
        """The provider said 429: halve the rate, and send nothing before its hint."""
        ops = self._heed(now, info)
        if retry_after is not None:
            ops.extend(self._hold(now, retry_after))
        if self.settings.adaptive:
            floor = min(self._ceiling, self.settings.requests_per_minute * FLOOR_FRACTION)
            change = RateChange(factor=DECREASE_FACTOR, floor=floor, ceiling=self._ceiling)
            ops.append(self._change(change))
        return ops

    def _heed(self, now: float, info: RateLimitInfo | None) -> list[Hold | ChangeRate]:
        ops: list[Hold | ChangeRate] = []
        if info is None:
            return ops
        if info.limit_requests is not None and 0 < info.limit_requests < self._ceiling:
            # The server's own per-minute limit is lower than ours: it wins.
            self._ceiling = float(info.limit_requests)
            ops.append(self._change(RateChange(ceiling=self._ceiling)))
        if info.remaining_requests == 0 and info.reset_requests is not None:
            ops.extend(self._hold(now, info.reset_requests))
        return ops

    def _change(self, change: RateChange) -> ChangeRate:
        return ChangeRate(self.key, change, self._ceiling)

    def _hold(self, now: float, seconds: float) -> list[Hold]:
        if seconds <= self._max_hold:
            return [Hold(self.key, now + seconds, self._ceiling)]
        return []
