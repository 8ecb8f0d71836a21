"""The circuit breaker: stop calling a provider that keeps failing, then probe it.

Closed (normal) until `failure_threshold` calls in a row end in a failure that says the
provider is down (a 5xx, a connection error, a timeout: the errors aigen retries, 429s
aside). Then open: calls fail at once with `CircuitOpenError`, nothing sent, until
`reset_timeout` has passed. Then one call goes through as a probe: if it succeeds, or
fails in a way that shows the provider is up (a 4xx, a safety block), the circuit closes;
if it fails like the others, it opens again. State changes take a lock held for a few
instructions, so one breaker serves every thread of a `Client` and every task of an
`AsyncClient`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._errors import (
    APIConnectionError,
    APITimeoutError,
    CircuitOpenError,
    ServerError,
)

__all__ = ["CircuitBreaker", "CircuitState", "counts_against_provider"]

State = Literal["closed", "open", "half_open"]


class CircuitBreaker(BaseModel):
    """When to stop calling a failing provider (pass as `circuit_breaker=`).

    - `failure_threshold`: consecutive calls ending in a provider failure (5xx,
      connection error, timeout) that open the circuit. 4xx answers and safety blocks
      never count: they show the provider is up.
    - `reset_timeout`: seconds the circuit stays open before one probe call is let through.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int = Field(default=5, ge=1)
    reset_timeout: float = Field(default=30.0, gt=0)


def counts_against_provider(error: BaseException) -> bool:
    """Whether a call that ended with `error` says the provider is failing."""
    if getattr(error, "held_back", False):
        return False  # refused by aigen before sending: the provider said nothing
    return isinstance(error, (ServerError, APIConnectionError, APITimeoutError))


class CircuitState:
    """One breaker's state, shared by all calls of one client; `clock` is monotonic."""

    def __init__(self, settings: CircuitBreaker, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False

    @property
    def state(self) -> State:
        """`"closed"`, `"open"` or `"half_open"` (a probe may go, or is out)."""
        with self._lock:
            return self._state

    def admit(self) -> bool:
        """Let a call through, or raise `CircuitOpenError`.

        Returns True when the call is the probe of a half-open circuit.
        """
        with self._lock:
            if self._state == "closed":
                return False
            waited = self._clock() - self._opened_at
            if self._state == "open" and waited >= self.settings.reset_timeout:
                self._state = "half_open"
            if self._state == "half_open" and not self._probe_out:
                self._probe_out = True
                return True
            left = max(0.0, self.settings.reset_timeout - waited)
            raise CircuitOpenError(
                f"the last {self._failures} calls failed, so this one was not sent; "
                + (
                    "a probe call is deciding whether the provider is back"
                    if self._state == "half_open"
                    else f"the next call goes through in {left:.1f} s"
                )
            )

    def record(self, error: BaseException | None, *, probe: bool) -> None:
        """Count how a call ended: `None` for success."""
        with self._lock:
            if probe:
                self._probe_out = False
            if error is None or not counts_against_provider(error):
                self._state = "closed"
                self._failures = 0
                return
            self._failures += 1
            if probe or self._failures >= self.settings.failure_threshold:
                self._state = "open"
                self._opened_at = self._clock()

    def abandon_probe(self) -> None:
        """A probe that ended without an answer (cancelled): let another call probe."""
        with self._lock:
            self._probe_out = False
