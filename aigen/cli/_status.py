"""What a call is doing, seen from the command line: retry events and a live status line.

The CLI gives its client `aigen.Hooks(on_retry=...)` (`RetryWatcher.hooks`), so each
retry reaches it as a typed `RetryEvent`, the way it reaches any app's hook, and it
redraws one line on a terminal (`StatusLine`) while a call runs.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from typing_extensions import Self

from .._hooks import Hooks
from .._retry import RetryEvent

__all__ = [
    "LiveLine",
    "RetryWatcher",
    "SeenRetry",
    "StatusLine",
    "is_terminal",
    "terminal_columns",
]

_SPINNER = "|/-\\"
_REFRESH_SECONDS = 0.1


@dataclass(frozen=True)
class SeenRetry:
    """One retry as the status line shows it: aigen's typed `RetryEvent`, and when it came."""

    event: RetryEvent
    at: float

    @property
    def generation_id(self) -> str:
        return self.event.generation_id

    @property
    def failed_attempt(self) -> int:
        return self.event.attempt

    @property
    def wait_seconds(self) -> float:
        return self.event.wait

    @property
    def cause(self) -> str:
        return str(self.event.error)


class RetryWatcher:
    """Collects the retries of the calls of a client made with its `hooks`."""

    def __init__(self) -> None:
        self.events: list[SeenRetry] = []

    @property
    def hooks(self) -> Hooks:
        """What to give the client: its retries then reach `on_retry`."""
        return Hooks(on_retry=self.on_retry)

    def on_retry(self, event: RetryEvent) -> None:
        """The `on_retry` hook: remember the retry and when it came (a list append is
        atomic, so `generate_many`'s threads may call it at once)."""
        self.events.append(SeenRetry(event, at=time.monotonic()))

    def for_generation(self, generation_id: str) -> list[SeenRetry]:
        """The retries of one call."""
        return [event for event in self.events if event.generation_id == generation_id]


class LiveLine:
    """A line a background thread redraws on a terminal; silent anywhere else.

    Subclasses say what the line reads (`text`); `draw()` may also be called at once.
    """

    refresh_seconds = _REFRESH_SECONDS
    keep_on_exit = False  # leave the last state on screen, or wipe the line
    thread_name = "aigen-live-line"

    def __init__(self, stream: TextIO, *, enabled: bool = True) -> None:
        self._stream = stream
        self._enabled = enabled and is_terminal(stream)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._draw_lock = threading.Lock()
        self._started = time.monotonic()
        self._width = 0

    def text(self, now: float) -> str:
        """The line as it reads at monotonic time `now`."""
        raise NotImplementedError

    def draw(self) -> None:
        """Redraw the line now (on a terminal)."""
        if not self._enabled:
            return
        with self._draw_lock:
            line = self.text(time.monotonic())[: terminal_columns(self._stream) - 1]
            self._stream.write("\r" + line.ljust(self._width))
            self._stream.flush()
            self._width = max(self._width, len(line))

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        if self._enabled:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join()
        if self.keep_on_exit:
            self.draw()
            self._stream.write("\n")
        else:
            self._stream.write("\r" + " " * self._width + "\r")
        self._stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.draw()


class StatusLine(LiveLine):
    """The elapsed time, the attempt, and while aigen waits to retry, how long and why."""

    thread_name = "aigen-status"

    def __init__(self, stream: TextIO, watcher: RetryWatcher, label: str) -> None:
        super().__init__(stream)
        self._watcher = watcher
        self._label = label

    def text(self, now: float) -> str:
        """The line as it reads at monotonic time `now`."""
        elapsed = now - self._started
        spinner = _SPINNER[int(elapsed / _REFRESH_SECONDS) % len(_SPINNER)]
        line = f"{spinner} {self._label} {elapsed:5.1f} s"
        events = [e for e in self._watcher.events if e.at >= self._started]
        if events:
            last = events[-1]
            left = last.wait_seconds - (now - last.at)
            if left > 0:
                line += f" · attempt {last.failed_attempt} failed, retrying in {left:.1f} s"
                line += f": {last.cause}"
            else:
                line += f" · attempt {last.failed_attempt + 1}"
        return line


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal `stream` is drawn on (stderr's, not stdout's).

    A terminal that reports 0 columns (some CI consoles and serial lines do) is taken as
    80 wide, as is one whose size cannot be read.
    """
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = shutil.get_terminal_size((80, 24)).columns
    return columns if columns > 0 else 80


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is an interactive terminal (never raises)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
