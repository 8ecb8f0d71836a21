"""How the CLI tells what happened: a sentence for people, JSON for scripts, or nothing."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TextIO

from .._models import GenerationResponse
from ._exit import BatchIncomplete, describe
from ._status import RetryWatcher, SeenRetry, StatusLine

__all__ = ["Mode", "Reporter"]

Mode = Literal["human", "quiet", "json"]


class Reporter:
    """Writes results to `out` and problems to `err`, in the chosen `mode`."""

    def __init__(self, mode: Mode, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.mode: Mode = mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.watcher = RetryWatcher()
        self._call_time: float | None = None  # how long the last watched call ran

    @contextmanager
    def watching(self, label: str) -> Iterator[None]:
        """While a call runs, show a live status line on a terminal (the client's hooks
        collect its retries: `self.watcher.hooks`), and time it."""
        started = time.monotonic()
        try:
            if self.mode == "human":
                with StatusLine(self.err, self.watcher, label):
                    yield
            else:
                yield
        finally:
            self._call_time = time.monotonic() - started

    def retries(self, response: GenerationResponse) -> list[SeenRetry]:
        """The retries that led to `response`."""
        return self.watcher.for_generation(response.generation_id)

    def saved(
        self, path: Path, response: GenerationResponse, *, conversation: Path | None = None
    ) -> None:
        """Report an image written to `path`."""
        if self.mode == "quiet":
            return
        if self.mode == "json":
            self.emit_json(self.summary(path, response, conversation))
            return
        kind = response.mime_type.removeprefix("image/").upper()
        line = (
            f"saved {path} ({response.width}x{response.height} {kind}) in "
            f"{response.total_time_ms / 1000:.1f} s, {response.attempts} attempt(s); "
            f"generation {response.generation_id}"
        )
        if response.request_id:
            line += f", request {response.request_id}"
        self.out.write(line + "\n")
        for event in self.retries(response):
            self.out.write(
                f"  attempt {event.failed_attempt} failed ({event.cause}); "
                f"waited {event.wait_seconds:.1f} s\n"
            )
        if conversation is not None:
            self.out.write(f"  conversation saved to {conversation}\n")
        suffix = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
        expected = suffix.get(response.mime_type)
        if expected and path.suffix.lower() not in (
            expected,
            ".jpeg" if expected == ".jpg" else expected,
        ):
            self.err.write(f"note: the image is {kind}; a {expected} name would suit it\n")

    def summary(
        self, path: Path, response: GenerationResponse, conversation: Path | None = None
    ) -> dict[str, object]:
        """What `--json` prints for one image."""
        return {
            "output": str(path),
            "conversation": None if conversation is None else str(conversation),
            "generation_id": response.generation_id,
            "provider": response.provider,
            "model": response.model,
            "mime_type": response.mime_type,
            "width": response.width,
            "height": response.height,
            "seed": response.seed,
            "attempts": response.attempts,
            "retries": [
                {"attempt": e.failed_attempt, "wait_seconds": e.wait_seconds, "cause": e.cause}
                for e in self.retries(response)
            ],
            "inference_time_ms": round(response.inference_time_ms, 1),
            "total_time_ms": round(response.total_time_ms, 1),
            "request_id": response.request_id,
            "usage": response.usage.model_dump(),
            "text": response.text,
        }

    def failed(self, error: BaseException) -> int:
        """Report `error` in one line (or as JSON) and return the exit code for it."""
        outcome = describe(error, self._call_time)
        if isinstance(error, BatchIncomplete) and self.mode == "json":
            return outcome.exit_code  # the batch's own document already lists each failure
        if self.mode == "json":
            self.emit_json(
                {
                    "error": outcome.error,
                    "message": outcome.message,
                    "exit_code": outcome.exit_code,
                    "generation_id": getattr(error, "generation_id", None),
                }
            )
        else:
            self.err.write(f"aigen: error: {outcome.message}\n")
        return outcome.exit_code

    def interrupted(self, exit_code: int) -> int:
        """Report a Ctrl-C: a line for people, a JSON document with `--json`."""
        if self.mode == "json":
            self.emit_json(
                {
                    "error": "KeyboardInterrupt",
                    "message": "interrupted",
                    "exit_code": exit_code,
                    "generation_id": None,
                }
            )
        else:
            self.err.write("aigen: interrupted\n")
        return exit_code

    def emit_json(self, payload: object) -> None:
        """One JSON document on the output stream."""
        self.out.write(json.dumps(payload, indent=2) + "\n")
