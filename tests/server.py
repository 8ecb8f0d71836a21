"""A scripted fake Gemini API on a real socket, for end-to-end tests.

`FakeGemini` is an `http.server.ThreadingHTTPServer` bound to `127.0.0.1` on a free
port, serving from a daemon thread. It answers `POST /{version}/models/{model}:generateContent`
(`v1`, `v1beta` or `v1alpha`) as the real API does (WIRE.md sections A and B), records
every request it receives, and plays a queue of scripted outcomes, one per valid request,
falling back to `default` (a 200 with a real PNG) when the queue is empty::

    with FakeGemini() as server:
        server.script(gemini_error(503, "UNAVAILABLE", "The model is overloaded."), success())
        client = Client(api_key="k", base_url=server.base_url)
        client.generate("a fox")
        assert len(server.requests) == 2

Outcomes are plain values:

- `Reply`: an HTTP answer (status, JSON or raw body, headers), optionally late (`delay`
  seconds before the status line: a stalled server, for timeouts) or slow (`body_duration`
  seconds to trickle the body out in `chunks` pieces after the headers).
- `Drop`: read the request, then close the connection without a byte of answer.

and made by the helpers `success()`, `error()`, `gemini_error()`, `stall()` and `drop()`.

Checks the real API makes come before the script and do not consume it: an unknown path
is a 404, a missing key (neither `x-goog-api-key` nor `?key=`) a 401, a key other than
`api_key` (when one is set) Gemini's 400 `API_KEY_INVALID`, and a body that is not JSON a
400. Those requests are recorded all the same.

Shutdown is clean: leaving the `with` block stops the accept loop, wakes every pause,
shuts down every connection still open (keep-alive ones included), joins every thread
and closes the listening socket. A thread that will not stop, or an exception in the
server's own code (a `Reply` body that is not JSON-able, say), is raised by `stop()`
rather than passing unseen as a dropped connection.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from typing_extensions import Self

from . import gemini_bodies as gb
from .images import png

__all__ = [
    "Drop",
    "FakeGemini",
    "Outcome",
    "RecordedRequest",
    "Reply",
    "drop",
    "error",
    "gemini_error",
    "stall",
    "success",
]

_PATH = re.compile(r"^/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):generateContent$")


# -- outcomes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An HTTP answer to play.

    `body` is sent as JSON unless it is `bytes`, which are sent as they are (an HTML page
    from a proxy, say). `headers` are added to `content-type` and `content-length`.
    `delay` is waited before the status line; `body_duration` is spread over `chunks`
    pauses between the headers and the last byte of the body. `cut_after` sends only that
    many bytes of the body (the full length is still announced) and then closes the
    connection: an answer lost halfway.
    """

    status: int = 200
    body: object = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body_duration: float = 0.0
    chunks: int = 4
    cut_after: int | None = None

    def encoded_body(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Drop:
    """Read the request, wait `delay`, then close the connection without answering."""

    delay: float = 0.0


Outcome = Reply | Drop


def success(
    image: bytes | None = None,
    *,
    delay: float = 0.0,
    body_duration: float = 0.0,
    chunks: int = 4,
    cut_after: int | None = None,
    headers: Mapping[str, str] | None = None,
    **answer: Any,
) -> Reply:
    """A 200 `generateContent` answer carrying `image` (a real 64x32 PNG by default).

    `delay`, `body_duration`, `chunks` and `cut_after` are `Reply`'s; `answer` goes to
    `gemini_bodies.image_answer` (`text=`, `response_id=`, ...).
    """
    body = gb.image_answer(image if image is not None else png(64, 32), **answer)
    return Reply(
        200,
        body,
        dict(headers or {}),
        delay=delay,
        body_duration=body_duration,
        chunks=chunks,
        cut_after=cut_after,
    )


def error(
    status: int,
    body: object,
    *,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """An error answer with any body (JSON-able, or raw `bytes`) and extra headers."""
    return Reply(status, body, dict(headers or {}), delay=delay)


def gemini_error(
    status: int,
    grpc_status: str,
    message: str,
    *details: dict[str, Any],
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
) -> Reply:
    """An error with Gemini's `google.rpc.Status` body (WIRE.md B.1), e.g. a `RetryInfo`."""
    return error(
        status, gb.error(status, grpc_status, message, *details), headers=headers, delay=delay
    )


def stall(seconds: float) -> Reply:
    """A success that waits `seconds` before sending its headers (to make clients time out)."""
    return success(delay=seconds)


def drop(delay: float = 0.0) -> Drop:
    """Close the connection without answering, after `delay` seconds."""
    return Drop(delay)


# -- what the server saw -----------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it.

    `headers` has lower-case names; `json` is the parsed body (`None` if it was not JSON);
    `arrived_at` is `time.monotonic()` once the whole request was read, so arrivals can be
    compared with each other and with the test's own clock. `outcome` is what was played
    (`None` when a built-in check answered instead of the script).
    """

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    json: Any
    arrived_at: float
    model: str | None
    outcome: Outcome | None


# -- the server --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    """The socket server: one thread per connection, each tracked so it can be stopped.

    `process_request` does what ThreadingMixIn's does, and also remembers each
    connection's socket (to shut it down on stop) and names its thread; `FakeGemini.stop()`
    joins the threads with a timeout, so ThreadingMixIn's own unbounded join list is unused.
    """

    daemon_threads = True
    request_queue_size = 512  # the default of 5 would drop connects from a burst of calls
    fake: FakeGemini

    def __init__(self, fake: FakeGemini) -> None:
        self.fake = fake
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._workers: list[threading.Thread] = []
        self._numbers = itertools.count(1)
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"fake-gemini-conn-{next(self._numbers)}",
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
    """Reads one request at a time (HTTP/1.1 keep-alive) and answers it for `FakeGemini`."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr: the server's `requests` list is the record."""

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        fake = self.server.fake
        body = self._read_body()
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        match = _PATH.match(url.path)
        refusal = fake._check(self.command, match, headers, query, parsed)
        outcome: Outcome = refusal if refusal is not None else fake._next_outcome()
        fake._record(
            RecordedRequest(
                method=self.command,
                path=url.path,
                query=query,
                headers=headers,
                body=body,
                json=parsed,
                arrived_at=time.monotonic(),
                model=match.group("model") if match else None,
                outcome=outcome if refusal is None else None,
            )
        )
        try:
            with fake._answering():
                self._play(outcome)
        except OSError:
            self.close_connection = True  # the client hung up (a timeout, say)

    def _read_body(self) -> bytes:
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

    def _play(self, outcome: Outcome) -> None:
        fake = self.server.fake
        if not fake._pause(outcome.delay) or isinstance(outcome, Drop):
            self.close_connection = True  # nothing is written: the client sees EOF
            return
        payload = outcome.encoded_body()
        headers = {
            "content-type": "application/json; charset=UTF-8",
            "content-length": str(len(payload)),
        }
        headers.update({name.lower(): value for name, value in outcome.headers.items()})
        self.send_response(outcome.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if outcome.cut_after is not None:
            payload = payload[: outcome.cut_after]
            self.close_connection = True
        pieces = max(1, min(outcome.chunks, len(payload))) if outcome.body_duration > 0 else 1
        step = max(1, -(-len(payload) // pieces))  # ceiling division
        for start in range(0, max(1, len(payload)), step):
            if outcome.body_duration > 0 and not fake._pause(outcome.body_duration / pieces):
                self.close_connection = True
                return
            self.wfile.write(payload[start : start + step])


class FakeGemini:
    """A scripted fake Gemini API on `127.0.0.1`; use it as a context manager.

    - `base_url`: `http://127.0.0.1:PORT`, to pass as `base_url=`.
    - `script(*outcomes)`: queue outcomes, played in order, one per valid request.
    - `default`: what is played once the queue is empty (a 200 with a PNG unless changed).
    - `requests`: every request received so far, in order of arrival.
    - `api_key`: when set, any other key gets the 400 `API_KEY_INVALID` Gemini sends.
    - `open_connections` / `wait_until(...)`: how many client connections are open now.
    - `peak_in_flight`: the most requests it was answering at once (for concurrency).
    """

    def __init__(self, *, api_key: str | None = None, default: Outcome | None = None) -> None:
        self.api_key = api_key
        self.default: Outcome = default if default is not None else success()
        self._queue: deque[Outcome] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._in_flight = 0
        self._failures: list[BaseException] = []  # handler bugs, raised by stop()
        self._peak_in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port and start serving in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("FakeGemini is already running")
        self._stopping.clear()
        self._failures.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-gemini-accept",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, drop open connections, join every thread, close the socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()  # wakes every scripted pause
        server.shutdown()  # returns once the accept loop has exited
        thread.join(timeout)
        server.disconnect_all()
        deadline = time.monotonic() + timeout
        for worker in server.connection_threads():
            worker.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        self._server = self._thread = None
        stuck = [t.name for t in [thread, *server.connection_threads()] if t.is_alive()]
        if stuck:
            raise RuntimeError(f"FakeGemini threads did not stop: {stuck}")
        if self._failures:
            failure = self._failures[0]
            raise RuntimeError(f"FakeGemini failed while answering: {failure!r}") from failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._failures.clear()  # the test's own failure is the one worth seeing
        self.stop()

    # -- what tests use ----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeGemini is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *outcomes: Outcome) -> None:
        """Queue outcomes for the next valid requests, in order."""
        with self._lock:
            self._queue.extend(outcomes)

    @property
    def pending(self) -> int:
        """Scripted outcomes not played yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def arrivals(self) -> list[float]:
        """`arrived_at` of every request so far."""
        return [r.arrived_at for r in self.requests]

    @property
    def peak_in_flight(self) -> int:
        """The most requests this server was answering at one time."""
        with self._lock:
            return self._peak_in_flight

    @property
    def open_connections(self) -> int:
        """Client connections accepted and not yet closed."""
        return self._server.open_connection_count() if self._server is not None else 0

    def wait_until(self, condition: Callable[[FakeGemini], bool], timeout: float = 2.0) -> bool:
        """Poll `condition(self)` until it holds or `timeout` passes; return whether it held."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- used by the handler -----------------------------------------------------------

    def _check(
        self,
        method: str,
        match: re.Match[str] | None,
        headers: Mapping[str, str],
        query: Mapping[str, list[str]],
        parsed: Any,
    ) -> Reply | None:
        """The answer the real API gives before any model runs, or `None` to play the script."""
        if match is None:
            return gemini_error(404, "NOT_FOUND", "Not found: no such method or path.")
        if method != "POST":
            return gemini_error(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed here.")
        key = headers.get("x-goog-api-key") or next(iter(query.get("key", [])), None)
        if not key:
            return gemini_error(401, "UNAUTHENTICATED", "Request is missing an API key.")
        if self.api_key is not None and key != self.api_key:
            return error(400, gb.key_invalid())
        if parsed is None or not isinstance(parsed, dict):
            return gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        return None

    def _next_outcome(self) -> Outcome:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def _pause(self, seconds: float) -> bool:
        """Wait at least `seconds`; `False` if the server is stopping (stop at once)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._stopping.wait(left):
                return False
        return not self._stopping.is_set()
