"""`FakeServer`: a scripted fake provider on a real `127.0.0.1` socket, in a background thread.

An `http.server.ThreadingHTTPServer` on a free port, one daemon thread per connection
(HTTP/1.1 keep-alive). Leaving the `with` block stops the accept loop, wakes every
scripted pause, shuts down every connection still open (keep-alive ones included), joins
every thread and closes the listening socket. A thread that will not stop, or an
exception in the fake's own code (a `Reply` body that is not JSON-able, say), is raised
by `stop()` rather than passing unseen as a dropped connection.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TypeVar

from ._dialect import Dialect
from ._gemini import GeminiDialect
from ._handler import ThreadedServer
from ._openai import OpenAIDialect
from ._outcomes import Outcome
from ._script import ScriptedAPI

__all__ = ["FakeGemini", "FakeOpenAI", "FakeServer", "fake_server"]

_F = TypeVar("_F", bound="FakeServer")


class FakeServer(ScriptedAPI):
    """A scripted fake provider API on `127.0.0.1` speaking `dialect`; a context manager.

    Everything `ScriptedAPI` has (`script()`, `default`, `requests`, `api_key`, ...), and:

    - `base_url`: `http://127.0.0.1:PORT`, to pass as `base_url=`.
    - `start()` / `stop()`, or `with`: serve in a background thread, then stop cleanly.
    - `open_connections` / `wait_until(...)`: how many client connections are open now.
    - `peak_in_flight`: the most requests it was answering at once (for concurrency).
    - `bytes_sent`: body bytes written to clients so far (to see an endless body stop).

    Use `FakeGemini`, `FakeOpenAI` or `fake_server(provider)` to make one. It listens
    on a free port unless given `port`; `mime_type` and `wall_clock` are `ScriptedAPI`'s.
    """

    def __init__(
        self,
        dialect: Dialect,
        *,
        api_key: str | None = None,
        default: Outcome | None = None,
        mime_type: str = "image/png",
        wall_clock: Callable[[], float] = time.time,
        port: int = 0,
    ) -> None:
        super().__init__(
            dialect, api_key=api_key, default=default, mime_type=mime_type, wall_clock=wall_clock
        )
        self._wanted_port = port
        self._stopping = threading.Event()
        self._in_flight = 0
        self._peak_in_flight = 0
        self._bytes_sent = 0
        self._failures: list[BaseException] = []  # the fake's own bugs, raised by stop()
        self._server: ThreadedServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def thread_prefix(self) -> str:
        """The name every thread of this fake starts with."""
        return f"aigen-fake-{self.dialect.name}"

    def start(self: _F) -> _F:
        """Bind a free port and start serving in a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        self._failures.clear()
        self._server = ThreadedServer(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},  # how soon stop() is noticed
            name=f"{self.thread_prefix}-accept",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, drop open connections, join every thread, close the socket.

        Raises `RuntimeError` if a thread would not stop or the fake failed while answering.
        """
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
        name = type(self).__name__
        stuck = [t.name for t in [thread, *server.connection_threads()] if t.is_alive()]
        if stuck:
            raise RuntimeError(f"{name} threads did not stop: {stuck}")
        if self._failures:
            failure = self._failures[0]
            raise RuntimeError(f"{name} failed while answering: {failure!r}") from failure

    def __enter__(self: _F) -> _F:
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

    @property
    def port(self) -> int:
        """The port it listens on (only while running)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT` (only while running)."""
        return f"http://127.0.0.1:{self.port}"

    def clear(self) -> None:
        """Forget the script and the record (see `ScriptedAPI.clear`), and the counts of
        `peak_in_flight` and `bytes_sent`. The server keeps running on its port."""
        super().clear()
        with self._lock:
            self._peak_in_flight = max(0, self._in_flight)
            self._bytes_sent = 0

    @property
    def peak_in_flight(self) -> int:
        """The most requests this server was answering at one time."""
        with self._lock:
            return self._peak_in_flight

    @property
    def bytes_sent(self) -> int:
        """Body bytes written to clients so far, all answers together (headers not counted)."""
        with self._lock:
            return self._bytes_sent

    @property
    def open_connections(self) -> int:
        """Client connections accepted and not yet closed."""
        return self._server.open_connection_count() if self._server is not None else 0

    def wait_until(self: _F, condition: Callable[[_F], bool], timeout: float = 2.0) -> bool:
        """Poll `condition(self)` until it holds or `timeout` passes; return whether it held."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- used by the handler -----------------------------------------------------------

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

    def _count_sent(self, size: int) -> None:
        with self._lock:
            self._bytes_sent += size

    def _pause(self, seconds: float) -> bool:
        """Wait at least `seconds`; `False` if the server is stopping (stop at once)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self._stopping.wait(left):
                return False
        return not self._stopping.is_set()


class FakeGemini(FakeServer):
    """A fake Gemini API: `POST /{v1,v1beta,v1alpha}/models/{model}:generateContent`."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default: Outcome | None = None,
        mime_type: str = "image/png",
        wall_clock: Callable[[], float] = time.time,
        port: int = 0,
    ) -> None:
        super().__init__(
            GeminiDialect(),
            api_key=api_key,
            default=default,
            mime_type=mime_type,
            wall_clock=wall_clock,
            port=port,
        )


class FakeOpenAI(FakeServer):
    """A fake OpenAI Images API: `POST /v1/images/generations` and `/v1/images/edits`.

    `rate_limit_headers` (such as `OPENAI_RATE_LIMIT_HEADERS`) go on every answer.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        default: Outcome | None = None,
        mime_type: str = "image/png",
        wall_clock: Callable[[], float] = time.time,
        port: int = 0,
        rate_limit_headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            OpenAIDialect(rate_limit_headers=rate_limit_headers),
            api_key=api_key,
            default=default,
            mime_type=mime_type,
            wall_clock=wall_clock,
            port=port,
        )


def fake_server(
    provider: str,
    *,
    api_key: str | None = None,
    default: Outcome | None = None,
    mime_type: str = "image/png",
    wall_clock: Callable[[], float] = time.time,
    port: int = 0,
) -> FakeServer:
    """A (not yet started) fake for `provider`, `"gemini"` or `"openai"` (see `FakeServer`)."""
    fakes: dict[str, type[FakeGemini] | type[FakeOpenAI]] = {
        "gemini": FakeGemini,
        "openai": FakeOpenAI,
    }
    if provider not in fakes:
        raise ValueError(f"no fake for provider {provider!r}; known: {sorted(fakes)}")
    return fakes[provider](
        api_key=api_key, default=default, mime_type=mime_type, wall_clock=wall_clock, port=port
    )
