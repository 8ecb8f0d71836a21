"""Each store operation of `aigen.redis.RedisStore` as a `Step`: which script, its keys
and arguments, what the in-process store does instead, and how to read Redis' answer."""

from __future__ import annotations

import time
from typing import Any, Literal

from ._memory_store import MemoryStore
from ._redis_runner import Step
from ._store import CallOutcome, CircuitVerdict, RateChange

__all__ = ["Steps"]


def _verdict(answer: Any) -> CircuitVerdict:
    decision, failures, reopens_in = (
        part.decode() if isinstance(part, bytes) else str(part) for part in answer
    )
    return CircuitVerdict(decision, int(failures), float(reopens_in))  # type: ignore[arg-type]


def _none(answer: Any) -> None:
    return None


class Steps:
    """The steps of one store: its key prefix, its TTL, its clock, its local stand-in."""

    def __init__(
        self, prefix: str, ttl: float, time_source: Literal["redis", "caller"], local: MemoryStore
    ) -> None:
        self.prefix, self.ttl, self.time_source, self.local = prefix, ttl, time_source, local

    def redis_key(self, key: str, kind: Literal["rl", "cb"]) -> str:
        """The Redis key of one bucket (`"rl"`) or one circuit (`"cb"`)."""
        # A brace would end the hash tag early and part a bucket's keys across slots.
        tag = key.replace("{", "(").replace("}", ")")
        return f"{self.prefix}:{{{tag}}}:{kind}"

    def _now(self, now: float) -> str:
        return repr(now) if self.time_source == "caller" else ""  # "": the server's TIME

    def reserve(
        self, key: str, now: float, burst: int, rate: float, max_wait: float | None, cost: int
    ) -> Step[float]:
        wait = "" if max_wait is None else repr(max_wait)
        args: list[object] = [self._now(now), burst, repr(rate), wait, cost, self.ttl]
        return Step(
            "reserve",
            [self.redis_key(key, "rl")],
            args,
            lambda: self.local.reserve(key, now, burst, rate, max_wait, cost),
            float,
            gate=True,
        )

    def refund(self, key: str, now: float, rate: float, cost: int) -> Step[None]:
        return Step(
            "refund",
            [self.redis_key(key, "rl")],
            [self._now(now), repr(rate), cost, self.ttl],
            lambda: self.local.refund(key, now, rate, cost),
            _none,
        )

    def hold_until(self, key: str, until: float, rate: float) -> Step[None]:
        if self.time_source == "caller":
            now, length = repr(until), 0.0
        else:
            # The hold's length from this host's wall clock (the clock the limiter read a
            # moment ago), added to Redis' clock: no two hosts' clocks are compared.
            now, length = "", until - time.time()
        return Step(
            "hold_until",
            [self.redis_key(key, "rl")],
            [now, repr(length), repr(rate), self.ttl],
            lambda: self.local.hold_until(key, until, rate),
            _none,
        )

    def change_rate(self, key: str, change: RateChange, rate: float) -> Step[float]:
        ceiling = "" if change.ceiling == float("inf") else repr(change.ceiling)
        args: list[object] = [
            "",  # the server's time, whatever the source: it only sets the key's expiry
            repr(change.factor),
            repr(change.step),
            repr(change.floor),
            ceiling,
            repr(rate),
            self.ttl,
        ]
        return Step(
            "change_rate",
            [self.redis_key(key, "rl")],
            args,
            lambda: self.local.change_rate(key, change, rate),
            float,
        )

    def admit(self, key: str, now: float, reset_timeout: float) -> Step[CircuitVerdict]:
        return Step(
            "admit",
            [self.redis_key(key, "cb")],
            [self._now(now), repr(reset_timeout), self.ttl],
            lambda: self.local.admit(key, now, reset_timeout),
            _verdict,
            gate=True,
        )

    def record(
        self, key: str, now: float, outcome: CallOutcome, probe: bool, threshold: int
    ) -> Step[None]:
        return Step(
            "record",
            [self.redis_key(key, "cb")],
            [self._now(now), outcome, "1" if probe else "0", threshold, self.ttl],
            lambda: self.local.record(key, now, outcome, probe, threshold),
            _none,
        )
