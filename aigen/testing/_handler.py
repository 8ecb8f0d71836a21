"""The socket side of `FakeServer`: a threading HTTP server whose threads can all be stopped."""

from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ._outcomes import Outcome, Reply
from ._recording import read_request

if TYPE_CHECKING:
    from ._server import FakeServer

__all__ = ["ThreadedServer"]


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
            self.close_connection = True  # nothing is written: the client sees EOF
            return
        payload = reply.encoded_body()
        headers = {
            "content-type": "application/json; charset=UTF-8",
            "content-length": str(len(payload)),
        }
        headers.update({name.lower(): value for name, value in reply.headers.items()})
        self.send_response(reply.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.cut_after is not None:
            payload = payload[: reply.cut_after]
            self.close_connection = True
        pieces = max(1, min(reply.chunks, len(payload))) if reply.body_duration > 0 else 1
        step = max(1, -(-len(payload) // pieces))  # ceiling division
        for start in range(0, max(1, len(payload)), step):
            if reply.body_duration > 0 and not fake._pause(reply.body_duration / pieces):
                self.close_connection = True
                return
            self.wfile.write(payload[start : start + step])
