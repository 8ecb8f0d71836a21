"""The retry policy, server hints, and the tenacity rules every call's flow runs.

One `RetryPolicy` is turned into tenacity's `retry` / `wait` / `stop` / `before_sleep`
here, once per client, in a `tenacity.Retrying` that the flow (aigen/_flow.py) drives
with `iter()` after each failed attempt: tenacity answers "sleep N" (the flow yields a
`Sleep`, then the next attempt) or raises the error. Nothing here sleeps, so both
clients share it whole.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field
from tenacity import RetryCallState, Retrying

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

__all__ = ["RetryEvent", "RetryPolicy", "RetryRules", "parse_retry_after_headers"]

logger = logging.getLogger("aigen")


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

    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0, strict=True)
    initial_delay: float = Field(
        default=DEFAULT_INITIAL_DELAY, ge=0, strict=True, allow_inf_nan=False
    )
    max_delay: float = Field(default=DEFAULT_MAX_DELAY, ge=0, strict=True, allow_inf_nan=False)
    max_retry_after: float = Field(default=DEFAULT_MAX_RETRY_AFTER, ge=0, strict=True)
    deadline: float | None = Field(default=None, gt=0, strict=True, allow_inf_nan=False)


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


@dataclass(frozen=True)
class RetryEvent:
    """One retry, as it is decided: which call, which attempt failed, why, and the wait.

    Logged at INFO on the `aigen` logger, with the event itself as the record's `retry`
    attribute (`record.retry`), for a log handler or a status line to read typed.
    """

    generation_id: str
    attempt: int  # the attempt that failed, from 1
    error: BaseException
    wait: float  # seconds until the next attempt
    server_hint: bool  # whether the wait is the server's own (Retry-After, RetryInfo, ...)


class _RetryingCall(Protocol):
    """What the retry rules read of a call (`GenerationCall`)."""

    generation_id: str
    last_retry: RetryEvent | None

    def elapsed(self) -> float: ...

    def jitter(self) -> float: ...


class RetryRules:
    """The tenacity callables that carry out a `RetryPolicy`: decide, wait, stop, log.

    One instance serves every call of a client: each callable reads the call from the
    `RetryCallState`'s first argument. `retrying()` puts them in a `tenacity.Retrying`
    that is never asked to sleep or call anything: the flow drives it with `iter()`.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def retrying(self) -> Retrying:
        """A `tenacity.Retrying` that decides by these rules (driven through `iter()`)."""
        return Retrying(
            retry=self.should_retry,
            wait=self.wait,
            stop=self.should_stop,
            before_sleep=self.log_retry,
            sleep=_never_sleep,
            reraise=True,
        )

    def remaining(self, call: _RetryingCall) -> float | None:
        """Seconds left before the deadline, or `None` without one."""
        if self.policy.deadline is None:
            return None
        return max(0.0, self.policy.deadline - call.elapsed())

    def should_retry(self, state: RetryCallState) -> bool:
        """tenacity `retry`: a retryable error whose server hint is not too long."""
        error = _error_of(state)
        if error is None or not is_retryable(error):
            return False
        hint = server_hint(error)
        return hint is None or hint <= self.policy.max_retry_after

    def wait(self, state: RetryCallState) -> float:
        """tenacity `wait`: the server's hint when it gave one, else jittered backoff.

        A hint of zero (`Retry-After: 0`, a date already past, `retry-after-ms: 0`) waits the
        backoff instead, as openai-python does: a proxy's zero would otherwise retry at once,
        a hot loop against a service that is struggling. Waiting longer than a hint of zero
        still never retries sooner than the server asked.
        """
        hint = server_hint(_error_of(state))
        retry_number = state.attempt_number  # 1 after the first failed attempt
        base = self.policy.initial_delay * 2 ** (retry_number - 1)
        jittered: float = base * (1 + JITTER_FRACTION * _call_of(state).jitter())
        backoff = min(self.policy.max_delay, jittered)
        return backoff if hint is None or hint <= 0 else hint

    def should_stop(self, state: RetryCallState) -> bool:
        """tenacity `stop`: out of retries, or the next wait would end past the deadline."""
        if state.attempt_number > self.policy.max_retries:
            return True
        if self.policy.deadline is None:
            return False
        return _call_of(state).elapsed() + state.upcoming_sleep > self.policy.deadline

    def log_retry(self, state: RetryCallState) -> None:
        """tenacity `before_sleep`: one log line per retry, with id, attempt, cause, wait."""
        call = _call_of(state)
        error = _error_of(state)
        assert error is not None  # tenacity sleeps only after a failed attempt
        event = RetryEvent(
            generation_id=call.generation_id,
            attempt=state.attempt_number,
            error=error,
            wait=state.upcoming_sleep,
            server_hint=server_hint(error) is not None,
        )
        call.last_retry = event  # for the call's on_retry hook
        logger.info(
            "generation %s: attempt %d failed (%s); retrying in %.2f s",
            event.generation_id,
            event.attempt,
            error,
            event.wait,
            extra={
                "generation_id": event.generation_id,
                "attempt": event.attempt,
                "wait_seconds": event.wait,
                "retry": event,
            },
        )


def _never_sleep(seconds: float) -> None:
    raise AssertionError("aigen's flows sleep through their driver, never in tenacity")


def _call_of(state: RetryCallState) -> _RetryingCall:
    call: _RetryingCall = state.args[0]
    return call


def _error_of(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()
