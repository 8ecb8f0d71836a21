"""Server-sent events, parsed as the bytes arrive: sans-IO, fed chunk by chunk.

`EventParser.feed(chunk)` returns the events its bytes complete, so a streaming flow hands
a partial image to the caller the moment its event's blank line arrives, not when the
stream ends. It follows the WHATWG `text/event-stream` rules a client needs: lines end in
`\\n`, `\\r\\n` or `\\r` (a `\\r` at a chunk's end waits to see whether `\\n` follows);
`data:` lines of one event are joined with `\\n`; one space after the colon is dropped;
`:` lines are comments; `event`, `id` and `retry` are kept; an event without data is not
dispatched; a leading UTF-8 BOM is skipped. A line has no length cap of its own (Gemini
sends a whole image in one `data:` line): the caller bounds the stream's bytes
(`max_response_bytes`).

Written here rather than taken from httpx-sse, which reads from an httpx response: a flow
never holds one, it only receives the bytes the driver read.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EventParser", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ServerSentEvent:
    """One event: its `data` (lines joined with `\\n`), and `event` (`"message"` when the
    server named none), `id` and `retry` (milliseconds) when it gave them."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class EventParser:
    """An incremental `text/event-stream` parser: bytes in, complete events out."""

    def __init__(self) -> None:
        self._pending = bytearray()  # the start of a line whose end has not arrived
        self._scanned = 0  # how much of it is known to hold no line break
        self._started = False  # past a possible BOM
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Take the stream's next bytes; return the events they complete, in order."""
        self._pending += chunk
        if not self._started:
            if len(self._pending) < len(_BOM) and _BOM.startswith(self._pending):
                return []  # could still be a BOM
            if self._pending.startswith(_BOM):
                del self._pending[: len(_BOM)]
            self._started = True
        events: list[ServerSentEvent] = []
        start = 0
        buffer = self._pending
        # A multi-megabyte line arrives in many chunks: search only the bytes not yet
        # searched, or each chunk would rescan the whole line.
        scan = self._scanned
        while True:
            cr = buffer.find(b"\r", scan)
            lf = buffer.find(b"\n", scan)
            if cr < 0 and lf < 0:
                scan = len(buffer)
                break
            if cr >= 0 and (lf < 0 or cr < lf):
                if cr + 1 == len(buffer):
                    scan = cr  # a \r at the end: wait to see whether \n follows
                    break
                end, after = cr, cr + (2 if buffer[cr + 1] == 0x0A else 1)
            else:
                end, after = lf, lf + 1
            event = self._line(bytes(buffer[start:end]))
            if event is not None:
                events.append(event)
            start = scan = after
        del buffer[:start]
        self._scanned = scan - start
        return events

    def close(self) -> list[ServerSentEvent]:
        """The stream ended: a last `\r` ends its line, and an event still unfinished
        after that is dropped, as the standard says."""
        events = self.feed(b"\n") if self._pending.endswith(b"\r") else []
        self._pending.clear()
        self._scanned = 0
        self._data = []
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            return None  # a comment (a keep-alive, say)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._id,
            retry=self._retry,
        )
        self._data = []
        self._event = ""
        return event
