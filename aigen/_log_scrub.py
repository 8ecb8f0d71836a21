"""Keeping the key out of httpx's and httpcore's own log records.

httpcore logs every response's headers at DEBUG; a gateway that echoes the key in a header
would put it in any log a DEBUG handler writes. Each client registers its key here; one
filter, on the loggers httpx and httpcore write to, replaces any registered key in a record
before a handler sees it. A filter on a logger only sees that logger's own records (not its
children's), so it sits on each one httpcore uses.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import Counter

from ._redact import MIN_SECRET_LENGTH, redact_value, scrub_chain

__all__ = ["HTTP_LOGGERS", "protect_key"]

HTTP_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _KeyScrubber(logging.Filter):
    """Replaces every live client's key in a record's message, arguments and exception."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._keys: Counter[str] = Counter()
        self._snapshot: tuple[str, ...] = ()
        self._installed = False

    def add(self, key: str) -> None:
        with self._lock:
            self._keys[key] += 1
            self._snapshot = tuple(self._keys)
            if not self._installed:
                for name in HTTP_LOGGERS:
                    logging.getLogger(name).addFilter(self)
                self._installed = True

    def discard(self, key: str) -> None:
        with self._lock:
            self._keys[key] -= 1
            if self._keys[key] <= 0:
                del self._keys[key]
            self._snapshot = tuple(self._keys)

    def filter(self, record: logging.LogRecord) -> bool:
        keys = self._snapshot
        if not keys:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit: leave it to logging
            return True
        clean = message
        for key in keys:
            clean = redact_value(clean, key)
        if clean is not message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            for key in keys:
                scrub_chain(record.exc_info[1], key, include_self=True)
            record.exc_text = None
        return True


_scrubber = _KeyScrubber()


def protect_key(owner: object, key: str) -> None:
    """Scrub `key` from httpx's and httpcore's records for as long as `owner` lives."""
    if len(key) < MIN_SECRET_LENGTH:
        return  # a placeholder (tests, local fakes), as in aigen._redact
    _scrubber.add(key)
    weakref.finalize(owner, _scrubber.discard, key)
