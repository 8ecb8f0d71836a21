"""The `aigen` command end to end, against the fake servers of `aigen.testing`.

Three layers:

- in process: `aigen.cli.main([...])` with the environment of a running fake, output
  captured by capsys (images written, the three output modes, refine across calls, the
  exit code of each error class);
- the installed console script in subprocesses (`aigen demo`, `aigen serve-fake`,
  `python -m aigen.cli`);
- the live status line, drawn under a pseudo-terminal and absent on a plain pipe.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import aigen
from aigen.cli import main
from aigen.testing import (
    FakeGemini,
    FakeServer,
    Outcome,
    RecordedRequest,
    bad_key,
    content_blocked,
    drop,
    fake_server,
    malformed,
    not_found,
    overloaded,
    quota_exhausted,
    rate_limited,
    render_image,
    text_only,
)

from .conftest import ENV_VARS

AIGEN = Path(sys.executable).with_name("aigen")
KEY = "cli-test-key-0123456789-never-print-me"
DOCUMENTED_KEYS = {
    "output",
    "generation_id",
    "provider",
    "model",
    "mime_type",
    "width",
    "height",
    "seed",
    "attempts",
    "retries",
    "inference_time_ms",
    "total_time_ms",
    "request_id",
    "usage",
    "text",
}
GENERATION_ID = re.compile(
    r"generation ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX terminal")


# --- helpers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What one command did: its exit code and what it printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)  # exactly one document, or this raises


Cli = Callable[..., Run]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """`cli("generate", ...)` runs `aigen.cli.main` in process and returns a `Run`."""

    def run(*argv: str | Path) -> Run:
        capsys.readouterr()
        try:
            code = main([str(arg) for arg in argv])
        except SystemExit as exit:  # argparse: usage errors, --version
            code = exit.code if isinstance(exit.code, int) else 1
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def _serve(provider: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    with fake_server(provider, api_key=KEY) as server:
        for name, value in server.environ.items():
            monkeypatch.setenv(name, value)
        yield server


@pytest.fixture(params=["gemini", "openai"])
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """A running fake of each provider; the environment points `aigen` at it."""
    yield from _serve(str(request.param), monkeypatch)


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    yield from _serve("gemini", monkeypatch)


@pytest.fixture
def openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    yield from _serve("openai", monkeypatch)


def _served_image(request: RecordedRequest) -> bytes:
    """The image bytes a fake sent in its answer to `request`."""
    assert request.reply is not None
    body = json.loads(request.reply.encoded_body())
    if "candidates" in body:  # Gemini
        parts = body["candidates"][0]["content"]["parts"]
        data = next(part["inlineData"]["data"] for part in parts if "inlineData" in part)
    else:  # OpenAI
        data = body["data"][0]["b64_json"]
    return base64.b64decode(data)


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()  # decodes the whole file: a truncated PNG fails here
        return image.size


def _error_line(run: Run) -> str:
    """The one line an error prints on stderr, without its prefix."""
    assert run.out == ""
    assert run.err.endswith("\n")
    assert run.err.count("\n") == 1, run.err
    assert run.err.startswith("aigen: error: ")
    return run.err.removeprefix("aigen: error: ").rstrip("\n")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- generate ---------------------------------------------------------------------------

# The fake draws Gemini's size for the requested aspect ratio, and OpenAI's requested size.
SIZES = {"gemini": ("1280x720", (1344, 768)), "openai": ("512x256", (512, 256))}


def test_generate_writes_the_served_image_and_says_so(
    fake: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    size, expected = SIZES[fake.provider]
    output = tmp_path / "fox.png"

    run = cli("generate", "a fox", "-o", output, "--size", size)

    assert run.code == 0, run.err
    (seen,) = fake.requests
    assert output.read_bytes() == _served_image(seen)
    assert output.read_bytes() == render_image("a fox", *expected)
    assert _png_size(output) == expected
    line = run.out.splitlines()[0]
    width, height = expected
    assert line.startswith(f"saved {output} ({width}x{height} PNG) in ")
    assert "1 attempt(s)" in line
    assert GENERATION_ID.search(line)
    assert f"request {seen.request_id}" in line
    assert run.err == ""


def test_generate_tells_each_retry_and_its_wait(fake: FakeServer, cli: Cli, tmp_path: Path) -> None:
    fake.script(rate_limited(0.05))

    run = cli("generate", "a fox", "-o", tmp_path / "fox.png")

    assert run.code == 0, run.err
    assert len(fake.requests) == 2
    first, retry = run.out.splitlines()
    assert "2 attempt(s)" in first
    assert re.fullmatch(r"  attempt 1 failed \(.*429.*\); waited 0\.\d s", retry)


def test_json_is_one_document_with_the_documented_keys_and_the_retries(
    fake: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    # A 503 whose hint keeps the wait short (aigen obeys retry-after-ms on any status).
    fake.script(overloaded(headers={"retry-after-ms": "50"}))
    output = tmp_path / "fox.png"

    run = cli("generate", "a fox", "-o", output, "--json", "--max-retries", "1")

    assert run.code == 0, run.err
    assert run.err == ""
    result = run.json()
    assert set(result) >= DOCUMENTED_KEYS
    assert result["output"] == str(output)
    assert result["provider"] == fake.provider
    assert result["model"] == fake.requests[-1].model
    assert result["mime_type"] == "image/png"
    assert (result["width"], result["height"]) == _png_size(output)
    assert result["attempts"] == 2
    (retry,) = result["retries"]
    assert retry["attempt"] == 1
    assert retry["wait_seconds"] == pytest.approx(0.05)
    assert "503" in retry["cause"]
    assert result["request_id"] == fake.requests[-1].request_id
    assert re.fullmatch(r"[0-9a-f-]{36}", result["generation_id"])
    assert result["total_time_ms"] >= result["inference_time_ms"] > 0
    assert result["total_time_ms"] >= 50
    assert isinstance(result["usage"], dict)
    if fake.provider == "gemini":
        assert isinstance(result["seed"], int)
        assert result["text"] == "Here is your image."
    else:
        assert result["seed"] is None


def test_quiet_prints_nothing_on_success(fake: FakeServer, cli: Cli, tmp_path: Path) -> None:
    output = tmp_path / "fox.png"

    run = cli("generate", "a fox", "-o", output, "--quiet")

    assert (run.code, run.out, run.err) == (0, "", "")
    assert output.read_bytes() == _served_image(fake.requests[-1])


def test_quiet_still_prints_an_error(fake: FakeServer, cli: Cli, tmp_path: Path) -> None:
    fake.script(not_found())

    run = cli("generate", "a fox", "-o", tmp_path / "fox.png", "--quiet")

    assert run.code == 9
    assert "check the model" in _error_line(run)


def test_an_input_image_is_sent_with_its_real_type(
    fake: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    photo = render_image("a photo", 64, 48, "image/jpeg")
    source = tmp_path / "photo.dat"  # the type comes from the bytes, not the name
    source.write_bytes(photo)

    run = cli("generate", "Make the sky purple", "-o", tmp_path / "out.png", "--input", source)

    assert run.code == 0, run.err
    (seen,) = fake.requests
    if fake.provider == "gemini":
        assert seen.json is not None
        parts = seen.json["contents"][0]["parts"]
        (inline,) = [part["inlineData"] for part in parts if "inlineData" in part]
        assert inline["mimeType"] == "image/jpeg"
        assert base64.b64decode(inline["data"]) == photo
        assert any("Make the sky purple" in part.get("text", "") for part in parts)
    else:
        assert seen.path == "/v1/images/edits"
        assert [(part.name, part.content_type) for part in seen.files] == [("image", "image/jpeg")]
        assert seen.files[0].data == photo
        assert "Make the sky purple" in seen.form["prompt"]


def test_a_missing_input_image_fails_before_any_request(
    fake: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "out.png", "--input", tmp_path / "nope.png")

    assert run.code == 13
    assert "nope.png" in _error_line(run)
    assert fake.requests == []


def test_the_seed_reaches_gemini(gemini: FakeServer, cli: Cli, tmp_path: Path) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "fox.png", "--seed", "42", "--json")

    assert run.code == 0, run.err
    (seen,) = gemini.requests
    assert seen.json is not None
    assert seen.json["generationConfig"]["seed"] == 42
    assert run.json()["seed"] == 42


def test_openai_takes_no_seed(openai: FakeServer, cli: Cli, tmp_path: Path) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "fox.png", "--seed", "42", "--json")

    assert run.code == 0, run.err
    (seen,) = openai.requests
    assert "seed" not in seen.fields
    assert run.json()["seed"] is None


# --- refine -----------------------------------------------------------------------------


def test_refine_starts_a_conversation_then_sends_its_history(
    fake: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    conversation = tmp_path / "chat.json"
    first, second = tmp_path / "1.png", tmp_path / "2.png"

    started = cli("refine", conversation, "a lighthouse", "-o", first)
    refined = cli("refine", conversation, "make it night", "-o", second)

    assert (started.code, refined.code) == (0, 0), started.err + refined.err
    assert f"conversation saved to {conversation}" in started.out
    assert first.read_bytes() == _served_image(fake.requests[0])
    assert second.read_bytes() == _served_image(fake.requests[1])
    assert first.read_bytes() != second.read_bytes()
    if fake.provider == "gemini":
        sizes = [len(seen.json["contents"]) for seen in fake.requests if seen.json]
        assert sizes == [1, 3]
        user, model, again = fake.requests[1].json["contents"]  # type: ignore[index]
        assert (user["role"], model["role"], again["role"]) == ("user", "model", "user")
        assert "a lighthouse" in user["parts"][0]["text"]
        earlier = [part["inlineData"]["data"] for part in model["parts"] if "inlineData" in part]
        assert [base64.b64decode(data) for data in earlier] == [first.read_bytes()]
        assert any("make it night" in part.get("text", "") for part in again["parts"])
    else:
        paths = [seen.path for seen in fake.requests]
        assert paths == ["/v1/images/generations", "/v1/images/edits"]
        (image,) = fake.requests[1].files
        assert image.data == first.read_bytes()
        assert "make it night" in fake.requests[1].form["prompt"]
    saved = json.loads(conversation.read_text())
    assert len(saved["history"]) == 4
    assert [turn["role"] for turn in saved["history"]] == ["user", "model"] * 2
    # The key is never written to the conversation, nor printed.
    assert KEY not in conversation.read_text()
    assert KEY not in started.out + started.err + refined.out + refined.err


def test_generate_can_start_the_conversation_refine_continues(
    gemini: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    conversation = tmp_path / "chat.json"

    made = cli("generate", "a fox", "-o", tmp_path / "1.png", "--conversation", conversation)
    again = cli("refine", conversation, "in the snow", "-o", tmp_path / "2.png", "--json")

    assert (made.code, again.code) == (0, 0), made.err + again.err
    assert f"conversation saved to {conversation}" in made.out
    assert again.json()["conversation"] == str(conversation)
    assert [len(seen.json["contents"]) for seen in gemini.requests if seen.json] == [1, 3]
    assert KEY not in conversation.read_text()


@pytest.mark.parametrize("content", ["{not json", '{"history": 3}', ""])
def test_a_corrupt_conversation_file_exits_13_and_says_so(
    fake: FakeServer, cli: Cli, tmp_path: Path, content: str
) -> None:
    conversation = tmp_path / "chat.json"
    conversation.write_text(content)

    run = cli("refine", conversation, "make it night", "-o", tmp_path / "out.png")
    as_json = cli("refine", conversation, "make it night", "-o", tmp_path / "out.png", "--json")

    assert run.code == 13
    message = _error_line(run)
    assert f"{conversation} is not a conversation saved by aigen" in message
    assert as_json.code == 13
    assert as_json.json()["exit_code"] == 13
    assert as_json.json()["message"] == message
    assert fake.requests == []
    assert conversation.read_text() == content  # left as it was
    assert not (tmp_path / "out.png").exists()


# --- exit codes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    outcome: Callable[[], Outcome]
    code: int
    error: str
    says: str
    options: Sequence[str] = ()
    providers: Sequence[str] = ("gemini", "openai")


FAILURES = {
    "content_blocked": Failure(content_blocked, 5, "ContentPolicyError", "rephrase"),
    "bad_key": Failure(bad_key, 4, "AuthenticationError", "check the API key"),
    "quota_exhausted": Failure(quota_exhausted, 8, "QuotaExceededError", "billing"),
    "rate_limited_300": Failure(lambda: rate_limited(300), 7, "RateLimitError", "wait 300 s"),
    "not_found": Failure(not_found, 9, "NotFoundError", "check the model"),
    "overloaded": Failure(overloaded, 10, "ServerError", "try again", ("--max-retries", "0")),
    "drop": Failure(drop, 11, "APIConnectionError", "could not reach", ("--max-retries", "0")),
    "malformed": Failure(malformed, 12, "GenerationError", "not JSON"),
    "text_only": Failure(text_only, 6, "NoImageError", "words only", providers=("gemini",)),
}


@pytest.mark.parametrize("mode", ["human", "json"])
@pytest.mark.parametrize(
    ("fake", "name"),
    [
        pytest.param(provider, name, id=f"{provider}-{name}")
        for name, failure in FAILURES.items()
        for provider in failure.providers
    ],
    indirect=["fake"],
)
def test_each_error_class_exits_with_its_own_code(
    fake: FakeServer, cli: Cli, tmp_path: Path, name: str, mode: str
) -> None:
    failure = FAILURES[name]
    fake.script(failure.outcome())
    output = tmp_path / "fox.png"
    json_flag = ["--json"] if mode == "json" else []

    run = cli("generate", "a fox", "-o", output, *failure.options, *json_flag)

    assert run.code == failure.code, run.out + run.err
    assert len(fake.requests) == 1  # not retried
    assert not output.exists()
    if mode == "human":
        message = _error_line(run)
    else:
        assert run.err == ""
        result = run.json()
        assert result["exit_code"] == failure.code
        assert result["error"] == failure.error
        assert re.fullmatch(r"[0-9a-f-]{36}", result["generation_id"])
        message = result["message"]
        assert "\n" not in message
    assert failure.says in message
    assert KEY not in run.out + run.err


@pytest.mark.parametrize("mode", ["human", "json"])
def test_a_closed_port_exits_11(
    monkeypatch: pytest.MonkeyPatch, cli: Cli, tmp_path: Path, mode: str
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("AIGEN_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    json_flag = ["--json"] if mode == "json" else []

    run = cli("generate", "a fox", "-o", tmp_path / "fox.png", "--max-retries", "0", *json_flag)

    assert run.code == 11
    message = _error_line(run) if mode == "human" else run.json()["message"]
    assert "could not reach the provider; check the network or base URL" in message
    if mode == "json":
        assert run.json()["error"] == "APIConnectionError"


@pytest.mark.parametrize("provider", ["gemini", "openai"])
def test_a_missing_key_exits_3_and_names_the_variable(
    cli: Cli, tmp_path: Path, provider: str
) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "fox.png", "--provider", provider)

    assert run.code == 3
    variable = "GEMINI_API_KEY" if provider == "gemini" else "OPENAI_API_KEY"
    assert variable in _error_line(run)
    assert not (tmp_path / "fox.png").exists()


def test_a_bad_size_is_a_usage_error(gemini: FakeServer, cli: Cli, tmp_path: Path) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "fox.png", "--size", "big")

    assert run.code == 2
    assert "size must be WIDTHxHEIGHT, like 1280x720, not 'big'" in run.err
    assert run.out == ""
    assert gemini.requests == []


def test_an_invalid_size_is_refused_before_sending(
    gemini: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    run = cli("generate", "a fox", "-o", tmp_path / "fox.png", "--size", "0x720")

    assert run.code == 3
    assert "width" in _error_line(run)
    assert gemini.requests == []


def test_a_quota_message_does_not_tell_to_wait(
    gemini: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    gemini.script(quota_exhausted())  # Gemini's per-day quota 429 carries a 30 s RetryInfo

    run = cli("generate", "a fox", "-o", tmp_path / "fox.png")

    assert run.code == 8
    assert "asks to wait" not in _error_line(run)


def test_an_unwritable_output_fails_before_any_request(
    gemini: FakeServer, cli: Cli, tmp_path: Path
) -> None:
    output = tmp_path / "missing" / "fox.png"

    run = cli("generate", "a fox", "-o", output)

    assert run.code == 13
    assert gemini.requests == []
    assert ".tmp" not in _error_line(run)


# --- the installed console script -------------------------------------------------------


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without keys, aigen settings or a terminal size, plus `extra`.

    The module-scoped demo fixture runs before conftest's `clean_env`, hence the filter.
    """
    dropped = {*ENV_VARS, "COLUMNS", "LINES"}
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Demo:
    """One `aigen demo` run: where it wrote, how long it took, what it said."""

    out_dir: Path
    seconds: float
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Demo]:
    """`aigen demo` in human and in JSON mode, run side by side (each takes ~2.5 s)."""
    started = time.monotonic()
    procs: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    for mode in ("human", "json"):
        out_dir = tmp_path_factory.mktemp(f"demo-{mode}") / "images"  # created by the demo
        flags = ["--json"] if mode == "json" else []
        procs[mode] = (
            out_dir,
            subprocess.Popen(
                [str(AIGEN), "demo", "--out-dir", str(out_dir), *flags],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=_env(),
            ),
        )
    runs = {}
    for mode, (out_dir, proc) in procs.items():
        with proc:
            try:
                out, err = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        runs[mode] = Demo(out_dir, time.monotonic() - started, proc.returncode, out, err)
    return runs


def test_the_demo_writes_two_pngs_and_tells_what_happened(demos: dict[str, Demo]) -> None:
    demo = demos["human"]
    out = demo.out

    assert demo.code == 0, demo.err
    assert demo.seconds < 10
    assert _png_size(demo.out_dir / "demo-1.png") == (1344, 768)
    assert _png_size(demo.out_dir / "demo-2.png") == (1344, 768)
    assert "no key, no network" in out
    assert "3 attempt(s)" in out
    assert "1 attempt(s)" in out
    assert re.search(r"attempt 1 failed \(.*\(gemini 429\)\); waited 1\.0 s", out)
    assert re.search(r"attempt 2 failed \(.*\(gemini 503\)\); waited \d\.\d s", out)
    ids = GENERATION_ID.findall(out)
    assert len(ids) == 2
    assert ids[0] != ids[1]
    assert re.search(r"saved \S+demo-1\.png \(1344x768 PNG\) in \d+\.\d s", out)
    assert "The refinement sent the whole conversation back" in out
    assert "\r" not in demo.err  # no terminal here: no status line


def test_the_demo_in_json_lists_both_images_and_the_retries(demos: dict[str, Demo]) -> None:
    demo = demos["json"]
    out_dir, code, out, err = demo.out_dir, demo.code, demo.out, demo.err

    assert code == 0, err
    assert err == ""
    result = json.loads(out)
    first, second = result["images"]
    assert [first["output"], second["output"]] == [
        str(out_dir / "demo-1.png"),
        str(out_dir / "demo-2.png"),
    ]
    assert set(first) >= DOCUMENTED_KEYS
    assert set(second) >= DOCUMENTED_KEYS
    assert first["attempts"] == 3
    assert second["attempts"] == 1
    rate_limit, overload = first["retries"]
    assert rate_limit["attempt"] == 1
    assert rate_limit["wait_seconds"] == pytest.approx(1.0)
    assert "429" in rate_limit["cause"]
    assert overload["attempt"] == 2
    assert "503" in overload["cause"]
    assert 1.0 <= overload["wait_seconds"] <= 1.25  # the second backoff step, 2 x 0.5 s, + jitter
    assert second["retries"] == []
    assert first["generation_id"] != second["generation_id"]
    assert first["total_time_ms"] >= 1000
    assert result["server"].startswith("http://127.0.0.1:")
    assert result["refinement_request_path"].endswith(":generateContent")
    for image in (first, second):
        assert Path(image["output"]).read_bytes().startswith(b"\x89PNG")


def test_the_demo_ignores_the_users_own_settings(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(AIGEN), "demo", "--json", "--out-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env({"OPENAI_API_KEY": "sk-the-users-own-key"}),
        timeout=20,
    )
    assert done.returncode == 0, done.stdout
    assert [image["provider"] for image in json.loads(done.stdout)["images"]] == ["gemini"] * 2


def _free_port() -> int:
    return _closed_port()  # bound then released: free until someone takes it


@POSIX_ONLY  # Ctrl-C as SIGINT
def test_serve_fake_serves_its_script_until_interrupted() -> None:
    port = _free_port()
    with subprocess.Popen(
        [str(AIGEN), "serve-fake", "--port", str(port), "--script", "503,ok"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            base_url = f"http://127.0.0.1:{port}"
            assert first == f"fake gemini API on {base_url} (Ctrl-C to stop)\n"
            assert f"export AIGEN_BASE_URL={base_url}" in proc.stdout.readline()
            policy = aigen.RetryPolicy(initial_delay=0.05)
            with aigen.Client(api_key="any-key", base_url=base_url, retry=policy) as client:
                image = client.generate("a fox")
            assert image.attempts == 2
            assert image.provider == "gemini"
            # Ctrl-C, as the banner says: the server stops, the command says so.
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130
    assert out == ""
    assert err == "aigen: interrupted\n"
    with socket.socket() as sock:  # the port was released
        sock.bind(("127.0.0.1", port))


def test_serve_fake_refuses_a_bad_script_as_a_usage_error() -> None:
    done = subprocess.run(
        [str(AIGEN), "serve-fake", "--script", "503,sometimes"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=10,
    )
    assert "unknown outcome 'sometimes'" in done.stderr
    assert "unexpected" not in done.stderr
    assert done.returncode == 2


def test_python_m_aigen_cli_prints_the_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aigen.cli", "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=10,
        check=True,
    )
    assert done.stdout == f"aigen {aigen.__version__}\n"


# --- the live status line ---------------------------------------------------------------


def _on_a_terminal(
    argv: Sequence[str], env: dict[str, str], columns: int | None = None
) -> tuple[int, str, bytes]:
    """Run `argv` with stderr on a pseudo-terminal; its code, stdout, and stderr's bytes."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    try:
        if columns is not None:
            size = struct.pack("HHHH", 24, columns, 0, 0)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
        with subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
        ) as proc:
            os.close(slave)
            slave = -1
            reader.start()
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                raise
        reader.join(timeout=5)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks)


@POSIX_ONLY
def test_a_terminal_shows_a_live_status_line_while_waiting(tmp_path: Path) -> None:
    with FakeGemini() as fake:
        fake.script(rate_limited(1.0))
        argv = [str(AIGEN), "generate", "a fox", "-o", str(tmp_path / "fox.png")]

        code, out, err = _on_a_terminal(argv, _env(fake.environ))

    assert code == 0, err
    assert "2 attempt(s)" in out
    assert b"\r" in err
    assert b"retrying in" in err
    assert b"attempt 1 failed" in err
    assert re.search(rb"generating +\d+\.\d s", err)
    # the count goes down while it waits
    waits = [float(left) for left in re.findall(rb"retrying in (\d+\.\d) s", err)]
    assert len(waits) >= 3
    assert waits[0] > waits[-1]
    assert re.search(rb"\r *\r$", err)  # the line is wiped at the end


@POSIX_ONLY
def test_a_pipe_gets_no_status_line(tmp_path: Path) -> None:
    with FakeGemini() as fake:
        fake.script(rate_limited(0.3))  # long enough for a few redraws, were there any
        done = subprocess.run(
            [str(AIGEN), "generate", "a fox", "-o", str(tmp_path / "fox.png")],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=_env(fake.environ),
            timeout=20,
        )

    assert done.returncode == 0, done.stderr
    assert b"\r" not in done.stderr
    assert done.stderr == b""
    assert b"2 attempt(s)" in done.stdout


@POSIX_ONLY
def test_the_status_line_fits_the_terminal_it_is_drawn_on(tmp_path: Path) -> None:
    with FakeGemini() as fake:
        fake.script(rate_limited(0.5))
        argv = [str(AIGEN), "generate", "a fox", "-o", str(tmp_path / "fox.png")]

        code, _, err = _on_a_terminal(argv, _env(fake.environ), columns=40)

    assert code == 0
    drawn = [segment for segment in err.decode().split("\r") if segment.strip()]
    assert drawn
    assert max(len(segment) for segment in drawn) < 40
