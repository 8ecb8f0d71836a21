"""The retry policy, server hints, and the tenacity callables both clients run.

One `RetryPolicy` is turned into tenacity's `retry` / `wait` / `stop` / `before_sleep`
here, once, and handed to `tenacity.Retrying` by `Client` and to
`tenacity.AsyncRetrying` by `AsyncClient`: the two clients cannot drift apart.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field
from tenacity import RetryCallState

from ._constants import (
    DEFAULT_INITIAL_DELAY,
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_AFTER,
    JITTER_FRACTION,
    RETRYABLE_STATUS_CODES,
)
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    QuotaExceededError,
)

__all__ = ["RetryPolicy", "parse_retry_after_headers"]

logger = logging.getLogger("aigen")

R = TypeVar("R")
A = TypeVar("A")


class RetryPolicy(BaseModel):
    """How a call is retried; every client builds its tenacity loop from one of these.

    - `max_retries`: retries after the first attempt (2 means 3 attempts in all).
    - `initial_delay`, `max_delay`: without a server hint, waits grow 1 s, 2 s, 4 s, ...
      from `initial_delay`, with up to 25% jitter added, never above `max_delay`.
    - `max_retry_after`: the longest server hint aigen will sleep on. A longer one raises
      the error at once, with `retry_after` set, so a web request is not held for minutes.
    - `deadline`: seconds for the whole call, waits included; no sleep is started that
      would end past it. `None` means no deadline beyond the retries themselves.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0)
    initial_delay: float = Field(default=DEFAULT_INITIAL_DELAY, ge=0)
    max_delay: float = Field(default=DEFAULT_MAX_DELAY, ge=0)
    max_retry_after: float = Field(default=DEFAULT_MAX_RETRY_AFTER, ge=0)
    deadline: float | None = Field(default=None, gt=0)


def parse_retry_after_headers(headers: Mapping[str, str], now: float) -> float | None:
    """Return the wait, in seconds, that `retry-after-ms` or `Retry-After` asks for.

    `headers` must have lower-case names; `now` is the current Unix time, for HTTP dates.
    A date in the past means 0. Garbage, negative and non-finite values are ignored
    (`None`), so a broken proxy falls back to backoff instead of crashing the call.
    When both headers are present the longer wait wins: aigen never retries early.
    """
    hints = [
        _parse_seconds(headers.get("retry-after-ms"), scale=0.001),
        _parse_retry_after(headers.get("retry-after"), now),
    ]
    valid = [hint for hint in hints if hint is not None]
    return max(valid) if valid else None


def _parse_seconds(value: str | None, *, scale: float = 1.0) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip()) * scale
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _parse_retry_after(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    seconds = _parse_seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT, asctime's and "-0000" included
        when = when.replace(tzinfo=timezone.utc)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError):  # a date beyond what the platform's clock can hold
        return None


def is_retryable(error: BaseException) -> bool:
    """Whether the policy may retry after `error` (the server's hint aside)."""
    if getattr(error, "held_back", False):
        return False  # aigen's own limit said no: trying again says no again
    if isinstance(error, (APIConnectionError, APITimeoutError)):
        return True
    if not isinstance(error, APIError) or isinstance(error, QuotaExceededError):
        return False
    return error.server_allows_retry is not False and error.status_code in RETRYABLE_STATUS_CODES


def server_hint(error: BaseException | None) -> float | None:
    """The wait the server asked for with this error, if any."""
    return error.retry_after if isinstance(error, APIError) else None


class RetryLoop:
    """The tenacity callables for one call: decide, wait, stop, log.

    Built per call, because the deadline is measured from the call's start. `clock` is a
    monotonic clock and `jitter` returns a float in [0, 1); both are injected so tests
    run without waiting and without chance.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        generation_id: str,
        clock: Callable[[], float],
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.generation_id = generation_id
        self._clock = clock
        self._jitter = jitter
        self._started = clock()

    def build(self, retrying_class: Callable[..., R], sleep: Callable[[float], object]) -> R:
        """Make a `tenacity.Retrying` or `AsyncRetrying` that carries out the policy."""
        return retrying_class(
            retry=self.should_retry,
            wait=self.wait,
            stop=self.should_stop,
            before_sleep=self.log_retry,
            sleep=sleep,
            reraise=True,
        )

    def resume_after(
        self, first_failure: BaseException, attempt: Callable[[A], R]
    ) -> Callable[[A], R]:
        """`attempt` as `tenacity.Retrying` should call it once the first attempt failed.

        Clients make the first attempt outside tenacity, so a call that succeeds at once
        pays nothing for the loop. When it fails, tenacity's first "attempt" raises that
        same failure without sending anything, and the loop carries on from there: the
        decisions, waits, logs and attempt numbers are those of a loop that made it.
        """
        replay = _Replay(first_failure)

        def replay_then_attempt(arg: A) -> R:
            replay()
            return attempt(arg)

        return replay_then_attempt

    def resume_after_async(
        self, first_failure: BaseException, attempt: Callable[[A], Awaitable[R]]
    ) -> Callable[[A], Awaitable[R]]:
        """`resume_after` for `tenacity.AsyncRetrying`, which awaits `attempt`."""
        replay = _Replay(first_failure)

        async def replay_then_attempt(arg: A) -> R:
            replay()
            return await attempt(arg)

        return replay_then_attempt

    def elapsed(self) -> float:
        """Seconds since the call started."""
        return self._clock() - self._started

    def remaining(self) -> float | None:
        """Seconds left before the deadline, or `None` without one."""
        if self.policy.deadline is None:
            return None
        return max(0.0, self.policy.deadline - self.elapsed())

    def should_retry(self, state: RetryCallState) -> bool:
        """tenacity `retry`: a retryable error whose server hint is not too long."""
        error = _error_of(state)
        if error is None or not is_retryable(error):
            return False
        hint = server_hint(error)
        return hint is None or hint <= self.policy.max_retry_after

    def wait(self, state: RetryCallState) -> float:
        """tenacity `wait`: the server's hint when it gave one, else jittered backoff."""
        hint = server_hint(_error_of(state))
        if hint is not None:
            return hint
        retry_number = state.attempt_number  # 1 after the first failed attempt
        base = self.policy.initial_delay * 2 ** (retry_number - 1)
        jittered: float = base * (1 + JITTER_FRACTION * self._jitter())
        return min(self.policy.max_delay, jittered)

    def should_stop(self, state: RetryCallState) -> bool:
        """tenacity `stop`: out of retries, or the next wait would end past the deadline."""
        if state.attempt_number > self.policy.max_retries:
            return True
        if self.policy.deadline is None:
            return False
        return self.elapsed() + state.upcoming_sleep > self.policy.deadline

    def log_retry(self, state: RetryCallState) -> None:
        """tenacity `before_sleep`: one log line per retry, with id, attempt, cause, wait."""
        logger.info(
            "generation %s: attempt %d failed (%s); retrying in %.2f s",
            self.generation_id,
            state.attempt_number,
            _error_of(state),
            state.upcoming_sleep,
            extra={
                "generation_id": self.generation_id,
                "attempt": state.attempt_number,
                "wait_seconds": state.upcoming_sleep,
            },
        )


class _Replay:
    """Raises the first attempt's failure once, then does nothing."""

    def __init__(self, failure: BaseException) -> None:
        self._failure: BaseException | None = failure

    def __call__(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure


def _error_of(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()
