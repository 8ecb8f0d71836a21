"""`aigen batch`: one image per prompt line, results in order, failures kept apart."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aigen._images import image_size
from aigen.cli import main
from aigen.cli._batch import ProgressBar, read_prompts
from aigen.testing import FakeGemini, FakeOpenAI, content_blocked, success

AIGEN = Path(sys.executable).with_name("aigen")
FAKES = {"gemini": FakeGemini, "openai": FakeOpenAI}


@pytest.fixture(params=sorted(FAKES))
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    with FAKES[request.param]() as server:
        for name, value in server.environ.items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("A fox\n# a comment\n\n  A whale at night  \nA banana\n", encoding="utf-8")
    return path


def test_prompt_files_skip_blank_lines_and_comments(prompts: Path) -> None:
    assert read_prompts(prompts) == ["A fox", "A whale at night", "A banana"]


def test_every_prompt_becomes_a_numbered_image(
    fake: Any, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["batch", str(prompts), "-o", str(out), "--size", "640x480"]) == 0
    files = sorted(path.name for path in out.iterdir())
    assert files == ["0001-a-fox.png", "0002-a-whale-at-night.png", "0003-a-banana.png"]
    assert len(fake.requests) == 3
    assert all(image_size((out / name).read_bytes()) is not None for name in files)
    assert "3 prompts: 3 saved" in capsys.readouterr().out


def test_a_failure_is_reported_and_the_others_are_saved(
    fake: Any, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script(success(), content_blocked("prompt"), success())
    out = tmp_path / "out"
    code = main(["batch", str(prompts), "-o", str(out), "--concurrency", "1"])
    assert code == 14
    assert sorted(path.name for path in out.iterdir()) == ["0001-a-fox.png", "0003-a-banana.png"]
    captured = capsys.readouterr()
    assert "3 prompts: 2 saved" in captured.out
    assert "prompt 2 failed" in captured.err
    assert "1 of 3 prompts failed" in captured.err


def test_json_lists_every_prompt_in_order(
    fake: Any, prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script(success(), content_blocked("output"), success())
    code = main(["batch", str(prompts), "-o", str(tmp_path / "o"), "--json", "--concurrency", "1"])
    report = json.loads(capsys.readouterr().out)
    assert code == 14
    assert (report["saved"], report["failed"]) == (2, 1)
    assert [item["prompt"] for item in report["results"]] == read_prompts(prompts)
    assert report["results"][1]["error"] == "ContentPolicyError"
    assert report["results"][1]["exit_code"] == 5
    assert report["results"][0]["output"].endswith("0001-a-fox.png")


def test_an_empty_prompt_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n", encoding="utf-8")
    assert main(["batch", str(empty), "-o", str(tmp_path / "o")]) == 13
    assert "holds no prompts" in capsys.readouterr().err


def test_the_progress_bar_text() -> None:
    bar = ProgressBar(io.StringIO(), 40)
    bar.update(10, 40)
    assert bar.text(bar._started + 75).startswith("[#####---------------] 10/40  1:15")


def test_no_progress_bar_off_a_terminal() -> None:
    stream = io.StringIO()
    with ProgressBar(stream, 3) as bar:
        bar.update(1, 3)
    assert stream.getvalue() == ""


def test_the_progress_bar_is_drawn_on_a_terminal(prompts: Path, tmp_path: Path) -> None:
    with FakeGemini() as server:
        server.default = success(delay=0.3)
        primary, secondary = pty.openpty()
        try:
            completed = subprocess.run(
                [
                    str(AIGEN),
                    "batch",
                    str(prompts),
                    "-o",
                    str(tmp_path / "o"),
                    "--concurrency",
                    "1",
                ],
                env={**os.environ, **server.environ},
                stdout=subprocess.PIPE,
                stderr=secondary,
                timeout=30,
            )
            os.close(secondary)
            drawn = b""
            while True:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                drawn += chunk
        finally:
            os.close(primary)
    assert completed.returncode == 0
    assert b"\r[" in drawn
    assert b"3/3" in drawn
