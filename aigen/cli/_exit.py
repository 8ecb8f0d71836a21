"""Exit codes and one-line advice for each error, so scripts can branch on `$?`."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pydantic

from .. import _errors as errors

__all__ = ["EXIT_CODES", "BatchIncomplete", "Outcome", "describe", "for_the_cli"]


class BatchIncomplete(Exception):
    """Some prompts of `aigen batch` failed; each was reported on its own already."""

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(f"{failed} of {total} prompts failed")


@dataclass(frozen=True)
class Outcome:
    """How the command ends for an error: exit code, class name, and what to do."""

    exit_code: int
    error: str
    message: str


# Most specific first: the first class an error is an instance of decides.
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (errors.ConfigurationError, 3, "fix that setting and run again"),
    (pydantic.ValidationError, 3, "fix that argument and run again"),
    (errors.AuthenticationError, 4, "check the API key (GEMINI_API_KEY / OPENAI_API_KEY)"),
    (errors.ContentPolicyError, 5, "rephrase it: the same request is refused every time"),
    (errors.NoImageError, 6, "the model answered in words only; make the prompt more explicit"),
    (errors.QuotaExceededError, 8, "the quota will not reset soon; check your plan and billing"),
    (errors.RateLimitError, 7, "too many requests; try again later"),
    (errors.ServerError, 10, "the provider is failing; try again in a minute"),
    (errors.APIError, 9, "the provider refused the request; check the model and arguments"),
    (errors.APIConnectionError, 11, "could not reach the provider; check the network or base URL"),
    (
        errors.APITimeoutError,
        11,
        "the provider did not answer in time; try again or raise --timeout",
    ),
    (errors.CircuitOpenError, 12, "recent calls kept failing; wait for the cool-down"),
    (errors.GenerationError, 12, "the answer was unusable; try again"),
    (OSError, 13, "check the file it names"),
    (BatchIncomplete, 14, "the others were saved; see the lines above for each failure"),
)
UNEXPECTED = 1
INTERRUPTED = 130


def describe(error: BaseException, elapsed: float | None = None) -> Outcome:
    """The exit code and a one-line message for `error`; `elapsed` is how long the call ran
    (seconds), told with its attempts when aigen retried it."""
    for error_class, code, advice in EXIT_CODES:
        if isinstance(error, error_class):
            summary = for_the_cli(_summary(error)) + _tried(error, elapsed)
            return Outcome(code, type(error).__name__, f"{summary}; {advice}")
    return Outcome(UNEXPECTED, type(error).__name__, f"unexpected error: {error}")


# The library's remedies name its keywords; the command line has flags and variables.
# Each library phrase is rewritten here, so the library's own messages stay right for its
# users while the CLI says what to type.
_CLI_REMEDIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r",? or pass api_key="), ""),
    (re.compile(r" \(or api_key=\)"), ""),
    (re.compile(r",? or pass a Provider instance"), " (--provider or AIGEN_PROVIDER)"),
    (re.compile(r"\braise timeout="), "raise --timeout"),
    (re.compile(r"\bpass base_url="), "pass --base-url (or set AIGEN_BASE_URL)"),
)
# A keyword named on its own (`timeout=`, not `timeout=5`) becomes the flag.
_FLAGS = {
    "timeout": "--timeout",
    "max_retries": "--max-retries",
    "base_url": "--base-url",
    "model": "--model",
    "provider": "--provider",
    "seed": "--seed",
    "input_image": "--input",
}
_BARE_KEYWORD = re.compile(r"`?\b(" + "|".join(_FLAGS) + r")=`?(?=[\s,;.)]|$)")


def for_the_cli(message: str) -> str:
    """`message` with the library's keyword remedies said as the CLI's flags/variables."""
    for pattern, replacement in _CLI_REMEDIES:
        message = pattern.sub(replacement, message)
    return _BARE_KEYWORD.sub(lambda m: _FLAGS[m.group(1)], message)


def _summary(error: BaseException) -> str:
    waits_help = not isinstance(error, errors.QuotaExceededError)
    if isinstance(error, errors.RateLimitError) and waits_help and error.retry_after is not None:
        return f"{_first_line(error)}; the server asks to wait {error.retry_after:.0f} s"
    if isinstance(error, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or 'input'}: {item['msg']}"
            for item in error.errors()
        )
        return f"invalid input: {problems}"
    return _first_line(error)


def _tried(error: BaseException, elapsed: float | None) -> str:
    """ " (after 3 attempts in 3.9 s)" for a call aigen retried, else nothing."""
    attempts = getattr(error, "attempts", None)
    if not isinstance(attempts, int) or attempts < 2:
        return ""
    took = f" in {elapsed:.1f} s" if elapsed is not None else ""
    return f" (after {attempts} attempts{took})"


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
