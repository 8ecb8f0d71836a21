"""The socket side of `FakeServer`: a threading HTTP server whose threads can all be stopped."""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ._outcomes import Drop, Outcome, Reply
from ._recording import read_request

if TYPE_CHECKING:
    from ._server import FakeServer

__all__ = ["ThreadedServer"]

# struct linger {int l_onoff; int l_linger;}: on, zero seconds: close() resets the connection.
_LINGER_ZERO = struct.pack("ii", 1, 0)
# The most body bytes written at once, and what an endless body repeats: 64 KiB of "A"s.
_WRITE_SIZE = 65536
_FILLER = b"A" * _WRITE_SIZE


class ThreadedServer(ThreadingHTTPServer):
    """The socket server: one thread per connection, each tracked so it can be stopped.

    `process_request` does what ThreadingMixIn's does, and also remembers each
    connection's socket (to shut it down on stop) and names its thread; `FakeServer.stop()`
    joins the threads with a timeout, so ThreadingMixIn's own unbounded join list is unused.
    """

    daemon_threads = True
    request_queue_size = 512  # the default of 5 would drop connects from a burst of calls

    def __init__(self, fake: FakeServer) -> None:
        self.fake = fake
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._workers: list[threading.Thread] = []
        self._numbers = itertools.count(1)
        super().__init__(("127.0.0.1", fake._wanted_port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{self.fake.thread_prefix}-conn-{next(self._numbers)}",
            daemon=True,
        )
        with self._lock:
            self._open.add(request)
            self._workers = [t for t in self._workers if t.is_alive()]
            self._workers.append(thread)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is expected; any other failure is kept for `stop()`."""
        failure = sys.exc_info()[1]
        if failure is not None and not isinstance(failure, OSError):
            self.fake._failures.append(failure)

    def open_connection_count(self) -> int:
        with self._lock:
            return len(self._open)

    def disconnect_all(self) -> None:
        """Wake every handler blocked on a socket: each then finishes and closes it."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the peer or its handler
                sock.shutdown(socket.SHUT_RDWR)

    def connection_threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._workers)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time (HTTP/1.1 keep-alive) and answers it for `FakeServer`."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK (~40 ms) on every keep-alive request.
    disable_nagle_algorithm = True
    server: ThreadedServer

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr: the fake's `requests` list is the record."""

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.server.fake
        seen = read_request(self.command, self.path, dict(self.headers.items()), self._body())
        outcome, reply = fake.respond(seen)
        try:
            with fake._answering():
                self._play(outcome, reply)
        except OSError:
            self.close_connection = True  # the client hung up (a timeout, say)

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _play(self, outcome: Outcome, reply: Reply | None) -> None:
        fake = self.server.fake
        if not fake._pause(outcome.delay) or reply is None:
            if isinstance(outcome, Drop) and outcome.reset and not fake._stopping.is_set():
                self._reset()
            self.close_connection = True  # nothing is written: the client sees EOF (or RST)
            return
        payload = reply.wire_body()
        chunked = reply.chunked or reply.endless_limit is not None
        self._send_head(reply, len(payload), chunked)
        lost_at = [n for n in (reply.cut_after, reply.reset_after) if n is not None]
        if lost_at:
            payload = payload[: min(lost_at)]
        whole = self._send_paced(payload, reply, chunked)
        if whole and not lost_at and reply.endless_limit is not None:
            self._send_endless(reply.endless_limit - len(payload))
            self.close_connection = True  # the body never ends: only closing can stop it
        elif reply.reset_after is not None:
            self._reset()
        elif lost_at or not whole:
            self.close_connection = True
        elif chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _send_head(self, reply: Reply, length: int, chunked: bool) -> None:
        """The status line and headers: the fake's defaults, then the reply's own."""
        headers = {"content-type": "application/json; charset=UTF-8"}
        if chunked:
            headers["transfer-encoding"] = "chunked"
        else:
            headers["content-length"] = str(length)
        if reply.gzip:
            headers["content-encoding"] = "gzip"
        headers.update({name.lower(): value for name, value in reply.headers.items()})
        if reply.content_type is not None:
            headers["content-type"] = reply.content_type
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        if reply.head_duration <= 0:
            self.end_headers()
            return
        # A byte at a time, spread over head_duration: each read a client makes gets a
        # byte in time, so only a limit on the whole exchange stops it.
        # BaseHTTPRequestHandler keeps the head it built in _headers_buffer until
        # end_headers() writes it in one go.
        buffered: list[bytes] = getattr(self, "_headers_buffer", [])
        head = b"".join(buffered) + b"\r\n"
        buffered.clear()
        pause = reply.head_duration / len(head)
        for i in range(len(head)):
            if not self.server.fake._pause(pause):
                raise ConnectionAbortedError("the fake stopped")
            self.wfile.write(head[i : i + 1])

    def _send_paced(self, payload: bytes, reply: Reply, chunked: bool) -> bool:
        """Send `payload` over `body_duration`; `False` if the fake stopped meanwhile."""
        fake = self.server.fake
        pieces = max(1, min(reply.chunks, len(payload))) if reply.body_duration > 0 else 1
        step = max(1, -(-len(payload) // pieces))  # ceiling division
        for start in range(0, max(1, len(payload)), step):
            if reply.body_duration > 0 and not fake._pause(reply.body_duration / pieces):
                return False
            self._write(payload[start : start + step], chunked)
        return True

    def _send_endless(self, budget: int) -> None:
        """Filler chunks until the client hangs up (an `OSError`), the fake stops, or `budget`."""
        stopping = self.server.fake._stopping
        while budget > 0 and not stopping.is_set():
            piece = _FILLER[:budget]
            self._write(piece, chunked=True)
            budget -= len(piece)

    def _write(self, piece: bytes, chunked: bool) -> None:
        """Write a piece of the body, 64 KiB at a time (each a chunk when `chunked`).

        Each write is counted once it has gone out, so `bytes_sent` tells within 64 KiB
        how much of a large body a client took before it hung up.
        """
        view = memoryview(piece)
        for start in range(0, len(view), _WRITE_SIZE):  # nothing for an empty piece
            part = view[start : start + _WRITE_SIZE]
            if chunked:
                self.wfile.write(b"%x\r\n" % len(part))
            self.wfile.write(part)
            # Counted before the chunk's trailer: a client that hangs up after reading the
            # data makes the trailer's write fail, and the data did go out.
            self.server.fake._count_sent(len(part))
            if chunked:
                self.wfile.write(b"\r\n")

    def _reset(self) -> None:
        """Close the connection with `SO_LINGER` 0: the kernel sends a RST, not a FIN.

        The socket is closed here, not shut down (a shutdown would send a FIN first); the
        request reader is closed first because it keeps the descriptor open otherwise.
        """
        with contextlib.suppress(OSError):  # the client may have gone already
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        self.rfile.close()
        self.connection.close()
        self.close_connection = True
