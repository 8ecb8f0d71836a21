"""The circuit breaker: stop calling a provider that keeps failing, then probe it.

Closed (normal) until `failure_threshold` calls in a row end in a failure that says the
provider is down (a 5xx, a connection error, a timeout: the errors aigen retries, 429s
aside). Then open: calls fail at once with `CircuitOpenError`, nothing sent, until
`reset_timeout` has passed. Then one call goes through as a probe: if it succeeds, or
fails in a way that shows the provider is up (a 4xx, a safety block), the circuit closes;
if it fails like the others, it opens again. A call that aigen held back itself, or that
was cancelled, counts as nothing.

The state lives in a `CircuitStore` (aigen/_store.py); `Breaker` only builds the
operations, which the call's flow yields to the client's driver.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ._errors import (
    APIConnectionError,
    APITimeoutError,
    CircuitOpenError,
    ServerError,
)
from ._memory_store import MemoryStore
from ._store import Admit, CallOutcome, CircuitStore, CircuitVerdict, Record

__all__ = ["Breaker", "CircuitBreaker", "counts_against_provider", "outcome_of"]


class CircuitBreaker(BaseModel):
    """When to stop calling a failing provider (pass as `circuit_breaker=`).

    - `failure_threshold`: consecutive calls ending in a provider failure (5xx,
      connection error, timeout) that open the circuit. 4xx answers and safety blocks
      never count: they show the provider is up.
    - `reset_timeout`: seconds the circuit stays open before one probe call is let through.
    - `store`: where the state lives; one `MemoryStore` per client by default, or a
      `aigen.redis.RedisStore` to share one breaker between processes.
    - `key`: the name of the breaker in the store; by default the provider, the client's
      default model, a hash of the API key and the base URL (as `RateLimit.key`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    failure_threshold: int = Field(default=5, ge=1, strict=True)
    reset_timeout: float = Field(default=30.0, gt=0, strict=True, allow_inf_nan=False)
    store: CircuitStore | None = Field(default=None, repr=False)
    key: str | None = Field(default=None, min_length=1)


def counts_against_provider(error: BaseException) -> bool:
    """Whether a call that ended with `error` says the provider is failing."""
    if getattr(error, "held_back", False):
        return False  # refused by aigen before sending: the provider said nothing
    return isinstance(error, (ServerError, APIConnectionError, APITimeoutError))


def outcome_of(error: BaseException | None) -> CallOutcome:
    """What a call that ended with `error` (`None`: success) tells the breaker."""
    if error is None:
        return "success"
    if getattr(error, "held_back", False):
        return "nothing"
    return "failure" if counts_against_provider(error) else "success"


class Breaker:
    """One client's breaker: the store operations that admit calls and count outcomes."""

    def __init__(self, settings: CircuitBreaker, *, key: str) -> None:
        self.settings = settings
        self.key = settings.key or key
        self.store: CircuitStore = settings.store or MemoryStore()

    def admit(self, now: float) -> Admit:
        """Ask whether a call may go."""
        return Admit(self.key, now, self.settings.reset_timeout)

    def record(self, now: float, outcome: CallOutcome, *, probe: bool) -> Record:
        """Count how an admitted call ended."""
        return Record(self.key, now, outcome, probe, self.settings.failure_threshold)


def refusal(verdict: CircuitVerdict) -> CircuitOpenError:
    """The error for a call the breaker did not let through."""
    if verdict.decision == "probing":
        why = "a probe call is deciding whether the provider is back"
    else:
        why = f"the next call goes through in {verdict.reopens_in:.1f} s"
    return CircuitOpenError(
        f"the last {verdict.failures} calls failed, so this one was not sent; {why}"
    )
