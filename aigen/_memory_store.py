"""`MemoryStore`: the limiter's and the breaker's state in this process (aigen/_store.py
says what a store does). A GCRA bucket per key for the limiter, a small state machine per
key for the breaker, all behind one lock held for a few instructions."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from ._store import CallOutcome, CircuitVerdict, RateChange

__all__ = ["MemoryStore"]


@dataclass
class _Bucket:
    arrival: float  # GCRA's theoretical arrival time of the next request
    requests_per_minute: float
    held_until: float = 0.0


@dataclass
class _Circuit:
    state: Literal["closed", "open", "half_open"] = "closed"
    failures: int = 0
    opened_at: float = 0.0
    probe_out: bool = False


class MemoryStore:
    """The in-process store: dicts behind one lock, shared by threads and tasks alike.

    Serves as both a `RateLimitStore` and a `CircuitStore`; every method holds the lock
    for a few instructions and never blocks otherwise, so an event loop may call it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._circuits: dict[str, _Circuit] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._buckets)} bucket(s), {len(self._circuits)} circuit(s))"

    def _bucket(self, key: str, now: float, default_rate: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(now, default_rate)
        return bucket

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
        with self._lock:
            bucket = self._bucket(key, now, default_rate)
            interval = 60.0 / bucket.requests_per_minute
            tolerance = interval * (burst - 1)
            start = max(now, bucket.held_until)
            arrival = max(bucket.arrival, start)
            # A cost of n is n slots in a row: the call waits for the last of them.
            wait = max(0.0, arrival + interval * (cost - 1) - tolerance - now, start - now)
            if max_wait is None or wait <= max_wait:
                bucket.arrival = arrival + interval * cost
            return wait

    def refund(self, key: str, now: float, default_rate: float, cost: int = 1) -> None:
        """See `Refund`."""
        with self._lock:
            bucket = self._bucket(key, now, default_rate)
            interval = 60.0 / bucket.requests_per_minute
            # Never earlier than now: a slot in the past is free already.
            bucket.arrival = max(now, bucket.arrival - interval * cost)

    def hold_until(self, key: str, until: float, default_rate: float) -> None:
        """See `Hold`."""
        with self._lock:
            bucket = self._bucket(key, until, default_rate)
            bucket.held_until = max(bucket.held_until, until)

    def change_rate(self, key: str, change: RateChange, default_rate: float) -> float:
        """See `ChangeRate`."""
        with self._lock:
            bucket = self._bucket(key, 0.0, default_rate)
            bucket.requests_per_minute = change.apply(bucket.requests_per_minute)
            return bucket.requests_per_minute

    def admit(self, key: str, now: float, reset_timeout: float) -> CircuitVerdict:
        """See `Admit`."""
        with self._lock:
            circuit = self._circuits.setdefault(key, _Circuit())
            if circuit.state == "closed":
                return _GO
            waited = now - circuit.opened_at
            if circuit.state == "open" and waited >= reset_timeout:
                circuit.state = "half_open"
            if circuit.state == "half_open":
                if circuit.probe_out:
                    return CircuitVerdict("probing", circuit.failures)
                circuit.probe_out = True
                return CircuitVerdict("probe", circuit.failures)
            return CircuitVerdict("open", circuit.failures, max(0.0, reset_timeout - waited))

    def record(
        self,
        key: str,
        now: float,
        outcome: CallOutcome,
        probe: bool,
        failure_threshold: int,
    ) -> None:
        """See `Record`."""
        with self._lock:
            circuit = self._circuits.setdefault(key, _Circuit())
            if probe:
                circuit.probe_out = False
            if outcome == "nothing":
                return  # held back or cancelled: the provider said nothing
            if outcome == "success":
                circuit.state, circuit.failures = "closed", 0
                return
            circuit.failures += 1
            if probe or circuit.failures >= failure_threshold:
                circuit.state, circuit.opened_at = "open", now

    def circuit_state(self, key: str) -> Literal["closed", "open", "half_open"]:
        """The state of one breaker (for inspection and tests)."""
        with self._lock:
            circuit = self._circuits.get(key)
            return "closed" if circuit is None else circuit.state

    def rate(self, key: str) -> float | None:
        """The current rate of one bucket in requests per minute, `None` if unknown."""
        with self._lock:
            bucket = self._buckets.get(key)
            return None if bucket is None else bucket.requests_per_minute


_GO = CircuitVerdict("go")
