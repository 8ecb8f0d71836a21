"""`aigen batch PROMPTS.txt -o DIR`: one image per prompt, several at a time."""

from __future__ import annotations

import argparse
import re
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TextIO

from .._errors import GenerationError
from .._models import GenerationRequest, GenerationResponse
from ._commands import client_from, write_file
from ._exit import BatchIncomplete, describe
from ._report import Reporter
from ._status import is_terminal, terminal_columns

__all__ = ["ProgressBar", "batch", "read_prompts"]

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def read_prompts(path: Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with `#` are skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def batch(args: argparse.Namespace, reporter: Reporter) -> None:
    """Generate every prompt of the file into the output folder, then report."""
    prompts = read_prompts(args.prompts)
    if not prompts:
        raise OSError(f"{args.prompts} holds no prompts (one per line; # starts a comment)")
    width, height = args.size if args.size is not None else (None, None)
    requests = [
        GenerationRequest(prompt=prompt, width=width, height=height, seed=args.seed)
        for prompt in prompts
    ]
    out_dir: Path = args.output
    out_dir.mkdir(parents=True, exist_ok=True)
    with client_from(args) as client, reporter.watcher:
        bar = ProgressBar(reporter.err, len(requests), enabled=reporter.mode == "human")
        with bar:
            results = client.generate_many(
                requests, concurrency=args.concurrency, on_progress=bar.update
            )
    saved = failed = 0
    summaries: list[dict[str, object]] = []
    for number, (prompt, result) in enumerate(zip(prompts, results, strict=True), start=1):
        if isinstance(result, GenerationResponse):
            path = out_dir / f"{number:04d}-{_slug(prompt)}{_EXTENSIONS[result.mime_type]}"
            write_file(path, result.image_data)
            saved += 1
            summaries.append({"prompt": prompt, **reporter.summary(path, result)})
        else:
            failed += 1
            summaries.append({"prompt": prompt, **_failure(result)})
            if reporter.mode == "human":
                reporter.err.write(f"prompt {number} failed: {describe(result).message}\n")
    if reporter.mode == "json":
        reporter.emit_json({"saved": saved, "failed": failed, "results": summaries})
    elif reporter.mode == "human":
        reporter.out.write(f"{len(prompts)} prompts: {saved} saved to {out_dir}, {failed} failed\n")
    if failed:
        raise BatchIncomplete(failed, len(prompts))


class ProgressBar:
    """`[#####-----] 12/40  2 failed  0:34` on a terminal, redrawn as calls finish."""

    def __init__(self, stream: TextIO, total: int, *, enabled: bool = True) -> None:
        self._stream = stream
        self._total = total
        self._done = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._enabled = enabled and is_terminal(stream)

    def update(self, done: int, total: int) -> None:
        """`on_progress` for `generate_many`."""
        with self._lock:
            self._done, self._total = done, total
        self._draw()

    def text(self, now: float) -> str:
        """The bar as it reads at monotonic time `now`."""
        with self._lock:
            done, total = self._done, self._total
        width = 20
        filled = width * done // total if total else width
        minutes, seconds = divmod(int(now - self._started), 60)
        bar = "#" * filled + "-" * (width - filled)
        return f"[{bar}] {done}/{total}  {minutes}:{seconds:02d}"

    def __enter__(self) -> ProgressBar:
        if self._enabled:
            self._thread = threading.Thread(target=self._tick, name="aigen-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._draw()
            self._stream.write("\n")
            self._stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def _draw(self) -> None:
        if not self._enabled:
            return
        columns = terminal_columns(self._stream) - 1
        self._stream.write("\r" + self.text(time.monotonic())[:columns])
        self._stream.flush()


def _failure(error: GenerationError) -> dict[str, object]:
    outcome = describe(error)
    return {
        "error": outcome.error,
        "message": outcome.message,
        "exit_code": outcome.exit_code,
        "generation_id": error.generation_id,
    }


def _slug(prompt: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return words[:40].rstrip("-") or "image"
