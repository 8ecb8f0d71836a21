"""The command line's parts that need no server: sizes, exit codes, the status line."""

from __future__ import annotations

import argparse
import io
import logging

import pydantic
import pytest

import aigen
from aigen import GenerationError, RetryEvent
from aigen.cli import main
from aigen.cli._commands import parse_size
from aigen.cli._exit import EXIT_CODES, describe
from aigen.cli._status import RetryWatcher, SeenRetry, StatusLine


@pytest.mark.parametrize(("text", "size"), [("1280x720", (1280, 720)), (" 64 X 32 ", (64, 32))])
def test_sizes_are_read(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1280", "12by3", "x720", "-5x5", ""])
def test_bad_sizes_say_the_form(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="WIDTHxHEIGHT"):
        parse_size(text)


def _api(cls: type[aigen.APIError], status: int, **extra: object) -> aigen.APIError:
    return cls("message", status_code=status, provider="gemini", **extra)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (aigen.ConfigurationError("no key"), 3),
        (_api(aigen.AuthenticationError, 401), 4),
        (aigen.ContentPolicyError("no", reason="SAFETY", stage="prompt"), 5),
        (aigen.NoImageError("words only", text="hi"), 6),
        (_api(aigen.RateLimitError, 429, retry_after=30.0), 7),
        (_api(aigen.QuotaExceededError, 429), 8),
        (_api(aigen.NotFoundError, 404), 9),
        (_api(aigen.BadRequestError, 400), 9),
        (_api(aigen.ServerError, 503), 10),
        (aigen.APIConnectionError("down"), 11),
        (aigen.APITimeoutError("slow"), 11),
        (aigen.CircuitOpenError("open"), 12),
        (aigen.GenerationError("bad body"), 12),
        (FileNotFoundError("in.png"), 13),
        (RuntimeError("bug"), 1),
    ],
)
def test_each_error_class_has_its_exit_code(error: BaseException, code: int) -> None:
    outcome = describe(error)
    assert outcome.exit_code == code
    assert "\n" not in outcome.message
    assert outcome.error == type(error).__name__


def test_exit_codes_tell_error_classes_apart() -> None:
    codes = {cls: code for cls, code, _ in EXIT_CODES}
    assert len({codes[aigen.RateLimitError], codes[aigen.QuotaExceededError]}) == 2
    assert codes[aigen.ContentPolicyError] not in (0, 1, 2)


def test_a_rate_limit_message_says_how_long_to_wait() -> None:
    outcome = describe(_api(aigen.RateLimitError, 429, retry_after=37.2))
    assert "wait 37 s" in outcome.message


def test_validation_errors_name_the_field() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        aigen.GenerationRequest(prompt=" ")
    outcome = describe(caught.value)
    assert outcome.exit_code == 3
    assert "prompt" in outcome.message
    assert "empty" in outcome.message


def test_version_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert aigen.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["generate", "no output file"])
    assert usage.value.code == 2
    assert "-o/--output" in capsys.readouterr().err


def test_the_watcher_collects_what_its_hook_is_given() -> None:
    first = RetryEvent("g-1", 1, GenerationError("overloaded (gemini 503)"), 2.0, False)
    other = RetryEvent("g-2", 1, GenerationError("timed out"), 1.0, False)
    watcher = RetryWatcher()
    hook = watcher.hooks.on_retry
    assert hook is not None
    hook(first)
    hook(other)
    assert [
        (e.generation_id, e.failed_attempt, e.wait_seconds) for e in watcher.for_generation("g-1")
    ] == [("g-1", 1, 2.0)]
    assert watcher.for_generation("g-1")[0].cause == "overloaded (gemini 503)"


def test_the_watcher_needs_no_logging() -> None:
    """The retries reach the status line through the client's hooks, whatever the logging."""
    logger = logging.getLogger("aigen")
    assert not any(type(h).__name__ == "RetryWatcher" for h in logger.handlers)


def test_the_status_line_counts_down_the_wait_and_names_the_cause() -> None:
    watcher = RetryWatcher()
    line = StatusLine(io.StringIO(), watcher, "generating")
    with line:
        start = line._started
        assert line.text(start + 1.0).endswith("generating   1.0 s")
        event = RetryEvent("g", 1, GenerationError("model overloaded"), 3.0, server_hint=False)
        watcher.events.append(SeenRetry(event, at=start + 1.0))
        waiting = line.text(start + 2.0)
        assert "attempt 1 failed, retrying in 2.0 s: model overloaded" in waiting
        assert line.text(start + 4.5).endswith("attempt 2")


def test_no_status_line_is_drawn_off_a_terminal() -> None:
    stream = io.StringIO()
    with StatusLine(stream, RetryWatcher(), "generating"):
        pass
    assert stream.getvalue() == ""
