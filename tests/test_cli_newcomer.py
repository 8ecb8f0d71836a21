"""What a newcomer meets first on the command line, in process (`aigen.cli.main`).

Remedies name the CLI's own flags and variables, the arguments are checked before the
environment, a command's own usage is printed, a failed call says it retried, `--json`
stays JSON on Ctrl-C, a 0-column terminal keeps each line whole, batch file names keep
their accents, and the demo's 429 reads as a rate limit.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

import aigen
from aigen.cli import _commands, main
from aigen.cli._batch import _slug
from aigen.cli._exit import describe, for_the_cli
from aigen.cli._status import RetryWatcher, StatusLine, terminal_columns
from aigen.testing import FakeServer, fake_server, overloaded

from .test_cli import KEY, Cli, Run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("generate", ...)` runs `aigen.cli.main` in process and returns a `Run`."""

    def run(*argv: str | Path) -> Run:
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as exit:  # argparse: usage errors
            code = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch) -> Any:
    with fake_server("gemini", api_key=KEY) as server:
        for name, value in server.environ.items():
            monkeypatch.setenv(name, value)
        yield server


def _error_line(run: Run) -> str:
    lines = [line for line in run.err.splitlines() if line.startswith("aigen: error:")]
    assert len(lines) == 1, run.err
    return lines[0]


# -- remedies in the CLI's own words --------------------------------------------------------


def test_no_key_names_the_variables_not_a_keyword(cli: Cli, tmp_path: Path) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "a.png")
    assert run.code == 3
    line = _error_line(run)
    assert "GEMINI_API_KEY" in line
    assert "api_key=" not in line


def test_an_unknown_provider_names_the_flag(cli: Cli, tmp_path: Path) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "a.png", "--provider", "nope")
    line = _error_line(run)
    assert "--provider" in line
    assert "Provider instance" not in line


@pytest.mark.parametrize(
    ("library", "cli_words", "gone"),
    [
        (
            aigen.APITimeoutError("gemini did not answer in time; raise timeout= if large"),
            "raise --timeout",
            "timeout=",
        ),
        (
            aigen.AuthenticationError(
                "API key not valid. Check the key in GEMINI_API_KEY or GOOGLE_API_KEY "
                "(or api_key=).",
                status_code=400,
                provider="gemini",
            ),
            "GEMINI_API_KEY or GOOGLE_API_KEY.",
            "api_key=",
        ),
        (
            aigen.ConfigurationError("no API key for openai: set OPENAI_API_KEY, or pass api_key="),
            "set OPENAI_API_KEY;",
            "api_key",
        ),
    ],
)
def test_library_remedies_are_said_as_flags(
    library: BaseException, cli_words: str, gone: str
) -> None:
    message = describe(library).message
    assert cli_words in message
    assert gone not in message
    assert gone in str(library)  # the library's own message is unchanged


def test_a_keyword_with_a_value_is_left_alone() -> None:
    assert for_the_cli("timeout=5 is too short") == "timeout=5 is too short"
    assert for_the_cli("raise `timeout=`.") == "raise --timeout."


# -- the arguments before the environment -----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["a fox", "--size", "0x720"], "width"),
        (["a fox", "--size", "1280x0"], "height"),
        (["", "--size", "64x64"], "prompt"),
        (["   "], "prompt"),
    ],
)
def test_bad_arguments_are_reported_before_a_missing_key(
    cli: Cli, tmp_path: Path, argv: list[str], field: str
) -> None:
    run = cli("generate", *argv, "-o", tmp_path / "a.png")
    assert run.code == 3
    line = _error_line(run)
    assert field in line
    assert "API key" not in line


def test_refine_checks_its_prompt_before_the_key(cli: Cli, tmp_path: Path) -> None:
    run = cli("refine", tmp_path / "c.json", "", "-o", tmp_path / "a.png")
    assert run.code == 3
    assert "prompt" in _error_line(run)


# -- a command's own usage -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["generate", "refine", "batch", "demo", "serve-fake"])
def test_an_unknown_flag_prints_the_commands_usage(cli: Cli, command: str) -> None:
    args = {
        "generate": ["a fox", "-o", "a.png"],
        "refine": ["c.json", "a fox", "-o", "a.png"],
        "batch": ["p.txt", "-o", "out"],
    }.get(command, [])
    run = cli(command, *args, "--bogus")
    assert run.code == 2
    assert f"usage: aigen {command}" in run.err
    assert f"aigen {command}: error: unrecognized arguments: --bogus" in run.err


# -- a failed call says it retried ------------------------------------------------------------


def test_a_failed_call_says_how_many_attempts_and_how_long(
    gemini: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    gemini.default = overloaded()
    run = cli("generate", "a fox", "-o", tmp_path / "a.png", "--max-retries", "1")
    assert run.code == 10
    line = _error_line(run)
    assert "(after 2 attempts in " in line
    assert line.split("(after 2 attempts in ")[1].split(" s)")[0].replace(".", "").isdigit()


def test_a_failed_call_in_json_says_it_too(gemini: FakeServer, cli: Cli, tmp_path: Path) -> None:
    gemini.default = overloaded()
    run = cli("generate", "--json", "a fox", "-o", tmp_path / "a.png", "--max-retries", "1")
    assert run.code == 10
    assert "after 2 attempts" in json.loads(run.out)["message"]


def test_a_first_attempt_failure_says_nothing_of_retries(cli: Cli, tmp_path: Path) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "a.png")
    assert "attempts" not in _error_line(run)


# -- Ctrl-C with --json -----------------------------------------------------------------------


def test_ctrl_c_with_json_prints_a_json_document(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_commands, "generate", interrupted)
    run = cli("generate", "--json", "a fox", "-o", tmp_path / "a.png")
    assert run.code == 130
    document = json.loads(run.out)
    assert document["exit_code"] == 130
    assert document["error"] == "KeyboardInterrupt"

    human = cli("generate", "a fox", "-o", tmp_path / "a.png")
    assert human.code == 130
    assert human.out == ""
    assert "aigen: interrupted" in human.err


# -- a terminal of 0 columns ------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return 2


def test_a_zero_column_terminal_keeps_each_line_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "get_terminal_size", lambda *a: os.terminal_size((0, 24)))
    stream = _Terminal()
    assert terminal_columns(stream) == 80
    line = StatusLine(stream, RetryWatcher(), "generating")
    line.draw()
    drawn = stream.getvalue().lstrip("\r")
    assert drawn.rstrip().endswith(" s")  # "generating   0.0 s", its last character kept


# -- batch file names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "slug"),
    [
        ("un café très chaud", "un-café-très-chaud"),
        ("Ärger über Öl", "ärger-über-öl"),
        ("日本の猫", "日本の猫"),
        ("a fox, in snow!", "a-fox-in-snow"),
        ("snake_case__words", "snake-case-words"),
        ("!!!", "image"),
    ],
)
def test_batch_file_names_keep_accented_letters(prompt: str, slug: str) -> None:
    assert _slug(prompt) == slug


# -- the demo ---------------------------------------------------------------------------------


def test_the_demos_429_reads_as_a_rate_limit(cli: Cli, tmp_path: Path) -> None:
    run = cli("demo", "--out-dir", tmp_path / "demo")
    assert run.code == 0, run.err
    failed = [line for line in run.out.splitlines() if "(gemini 429)" in line]
    assert failed
    assert "rate limit" in failed[0]
    assert "quota" not in failed[0]
    assert "billing" not in failed[0]
