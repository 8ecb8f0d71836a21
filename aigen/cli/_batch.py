"""`aigen batch PROMPTS.txt -o DIR`: one image per prompt, several at a time."""

from __future__ import annotations

import argparse
import re
import unicodedata
from pathlib import Path
from typing import TextIO

from .._errors import GenerationError
from .._models import GenerationRequest, GenerationResponse
from ._commands import client_from, write_file
from ._exit import BatchIncomplete, describe
from ._report import Reporter
from ._status import LiveLine

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
    with client_from(args, reporter) as client:
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


class ProgressBar(LiveLine):
    """`[#####---------------] 12/40  0:34` on a terminal, redrawn as calls finish."""

    refresh_seconds = 0.5
    keep_on_exit = True
    thread_name = "aigen-progress"

    def __init__(self, stream: TextIO, total: int, *, enabled: bool = True) -> None:
        super().__init__(stream, enabled=enabled)
        self._total = total
        self._done = 0

    def update(self, done: int, total: int) -> None:
        """`on_progress` for `generate_many`."""
        self._done, self._total = done, total
        self.draw()

    def text(self, now: float) -> str:
        """The bar as it reads at monotonic time `now`."""
        done, total = self._done, self._total
        width = 20
        filled = width * done // total if total else width
        minutes, seconds = divmod(int(now - self._started), 60)
        bar = "#" * filled + "-" * (width - filled)
        return f"[{bar}] {done}/{total}  {minutes}:{seconds:02d}"


def _failure(error: GenerationError) -> dict[str, object]:
    outcome = describe(error)
    return {
        "error": outcome.error,
        "message": outcome.message,
        "exit_code": outcome.exit_code,
        "generation_id": error.generation_id,
    }


def _slug(prompt: str) -> str:
    """A file name's part from the prompt: its letters and digits in any script (accents
    kept, "un café" is "un-café"), everything else a single dash."""
    text = unicodedata.normalize("NFC", prompt.lower())
    words = re.sub(r"[\W_]+", "-", text).strip("-")
    return words[:40].rstrip("-") or "image"
