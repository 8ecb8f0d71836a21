"""A call's deadline caps every socket operation, status line and headers included.

httpx's timeouts are per read, so a server trickling a valid answer a byte at a time never
trips them. The clients of aigen/_transport.py cap each read to the time left before the
deadline set by `exchange_deadline`. A real TCP server on 127.0.0.1 does the trickling.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest

from aigen._capped_streams import AsyncCappedBackend, CappedBackend
from aigen._deadline import current_deadline, exchange_deadline
from aigen._transport import POOL_LIMITS, DefaultAsyncHttpxClient, DefaultHttpxClient

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
LIFETIME = 15.0  # the server stops by itself after this long, whatever the test did


class TrickleServer:
    """Answers every request on 127.0.0.1 with ANSWER, one byte each `delay` seconds.

    Keeps connections alive (HTTP/1.1), counts them, and stops on close() or LIFETIME.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        end = time.monotonic() + LIFETIME
        with self._listener:
            while not self._stop.is_set() and time.monotonic() < end:
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                self.connections += 1
                worker = threading.Thread(target=self._serve, args=(conn, end), daemon=True)
                self._threads.append(worker)
                worker.start()

    def _serve(self, conn: socket.socket, end: float) -> None:
        conn.settimeout(0.05)
        buffered = b""
        with conn:
            while not self._stop.is_set() and time.monotonic() < end:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return  # the client closed the connection
                buffered += chunk
                while b"\r\n\r\n" in buffered:  # a GET: the request ends with its headers
                    _, buffered = buffered.split(b"\r\n\r\n", 1)
                    if not self._answer(conn):
                        return

    def _answer(self, conn: socket.socket) -> bool:
        # Undelayed, all at once: byte-sized sends would wait on Nagle and delayed ACKs.
        pieces = [ANSWER[i : i + 1] for i in range(len(ANSWER))] if self.delay else [ANSWER]
        for piece in pieces:
            if self.delay and self._stop.wait(self.delay):
                return False
            try:
                conn.sendall(piece)
            except OSError:  # the client gave up and closed
                return False
        return True

    def close(self) -> None:
        self._stop.set()
        self._threads[0].join(5)  # the acceptor first: then no worker is added
        for thread in self._threads[1:]:
            thread.join(5)


@pytest.fixture
def trickle() -> Iterator[TrickleServer]:
    """A server sending a byte every 0.1 s: the whole answer takes about 4 s."""
    server = TrickleServer(0.1)
    yield server
    server.close()


@pytest.fixture
def slow() -> Iterator[TrickleServer]:
    """A server sending a byte every 0.01 s: about 0.4 s for the whole answer."""
    server = TrickleServer(0.01)
    yield server
    server.close()


@pytest.fixture
def fast() -> Iterator[TrickleServer]:
    server = TrickleServer(0)
    yield server
    server.close()


def _get(kind: str, url: str, deadline: float | None, times: int = 1) -> list[httpx.Response]:
    """GET `url` `times` times on one new client of `kind`, inside `exchange_deadline`."""
    if kind == "sync":
        with DefaultHttpxClient(timeout=5) as client, exchange_deadline(deadline):
            return [client.get(url) for _ in range(times)]

    async def main() -> list[httpx.Response]:
        async with DefaultAsyncHttpxClient(timeout=5) as client:
            with exchange_deadline(deadline):
                return [await client.get(url) for _ in range(times)]

    return asyncio.run(main())


KINDS = pytest.mark.parametrize("kind", ["sync", "async"])


@KINDS
def test_a_trickled_answer_ends_at_the_deadline(kind: str, trickle: TrickleServer) -> None:
    started = time.monotonic()
    # A read, as a rule; a write or connect on a machine loaded enough to be that late.
    with pytest.raises(httpx.TimeoutException):
        _get(kind, trickle.url, time.monotonic() + 0.8)
    elapsed = time.monotonic() - started
    assert 0.7 < elapsed < 3.5  # it waited for the deadline, not the whole answer's 4 s


@KINDS
def test_without_a_deadline_a_trickled_answer_completes(kind: str, slow: TrickleServer) -> None:
    [response] = _get(kind, slow.url, None)
    assert response.status_code == 200
    assert response.content == b"ok"


@KINDS
def test_a_fast_answer_inside_a_deadline_reuses_its_connection(
    kind: str, fast: TrickleServer
) -> None:
    responses = _get(kind, fast.url, time.monotonic() + 10, times=2)
    assert [r.status_code for r in responses] == [200, 200]
    assert [r.content for r in responses] == [b"ok", b"ok"]
    assert fast.connections == 1


def test_a_deadline_belongs_to_the_thread_that_set_it(slow: TrickleServer) -> None:
    # One thread keeps a deadline already passed set while the other makes its whole call.
    outcomes: dict[str, Any] = {}
    late_failed, free_done = threading.Event(), threading.Event()

    def late(client: httpx.Client) -> None:
        with exchange_deadline(time.monotonic() - 1):
            began = time.monotonic()
            try:
                client.get(slow.url)
            except httpx.TimeoutException as exc:
                outcomes["late"] = exc
            outcomes["late took"] = time.monotonic() - began
            late_failed.set()
            free_done.wait(10)

    def free(client: httpx.Client) -> None:
        late_failed.wait(10)
        outcomes["free"] = client.get(slow.url).content
        free_done.set()

    with DefaultHttpxClient(timeout=5) as client:
        threads = [threading.Thread(target=f, args=(client,)) for f in (late, free)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    assert isinstance(outcomes["late"], httpx.TimeoutException)
    assert outcomes["late took"] < 0.5  # at once: it never waited on the socket
    assert outcomes["free"] == b"ok"


def test_a_deadline_belongs_to_the_task_that_set_it(slow: TrickleServer) -> None:
    async def main() -> tuple[BaseException | None, bytes]:
        late_failed, free_done = asyncio.Event(), asyncio.Event()

        async def late(client: httpx.AsyncClient) -> BaseException | None:
            with exchange_deadline(time.monotonic() - 1):
                try:
                    await client.get(slow.url)
                except httpx.TimeoutException as exc:
                    return exc
                finally:
                    late_failed.set()
                    await free_done.wait()  # the deadline stays set while `free` runs
            return None

        async def free(client: httpx.AsyncClient) -> bytes:
            await late_failed.wait()
            try:
                return (await client.get(slow.url)).content
            finally:
                free_done.set()

        async with DefaultAsyncHttpxClient(timeout=5) as client:
            return await asyncio.wait_for(asyncio.gather(late(client), free(client)), 10)

    late_outcome, free_outcome = asyncio.run(main())
    assert isinstance(late_outcome, httpx.TimeoutException)
    assert free_outcome == b"ok"


def test_the_deadline_nests_and_is_restored() -> None:
    now = time.monotonic()
    assert current_deadline() is None
    with exchange_deadline(now + 5):
        assert current_deadline() == now + 5
        with exchange_deadline(now + 60):  # a later deadline does not extend the call's
            assert current_deadline() == now + 5
        with exchange_deadline(None):  # nor does "no deadline" lift it
            assert current_deadline() == now + 5
        with exchange_deadline(now + 1):
            assert current_deadline() == now + 1
        assert current_deadline() == now + 5
    assert current_deadline() is None


class _Recorder(httpcore.NetworkBackend, httpcore.NetworkStream):
    """A backend and stream that only record the timeouts they are given."""

    def __init__(self) -> None:
        self.timeouts: list[tuple[str, float | None]] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        self.timeouts.append(("connect", timeout))
        return self

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.timeouts.append(("read", timeout))
        return b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.timeouts.append(("write", timeout))

    def start_tls(self, ssl_context: Any, server_hostname: Any = None, timeout: Any = None) -> Any:
        self.timeouts.append(("tls", timeout))
        return self


def test_each_operation_gets_the_smaller_of_its_timeout_and_the_time_left() -> None:
    inner = _Recorder()
    stream = CappedBackend(inner).connect_tcp("h", 1, timeout=5)
    tls = stream.start_tls(ssl_context=None, timeout=5)  # type: ignore[arg-type]
    assert type(tls) is type(stream)  # the TLS stream is capped too
    tls.read(1, timeout=None)
    tls.write(b"x", timeout=0.5)
    with exchange_deadline(time.monotonic() + 2):
        tls.read(1, timeout=None)
        tls.read(1, timeout=5)
        tls.write(b"x", timeout=0.5)
    operations = inner.timeouts
    assert operations[:4] == [("connect", 5), ("tls", 5), ("read", None), ("write", 0.5)]
    assert [name for name, _ in operations[4:]] == ["read", "read", "write"]
    assert 1.5 < operations[4][1] <= 2  # type: ignore[operator]
    assert 1.5 < operations[5][1] <= 2  # type: ignore[operator]
    assert operations[6][1] == 0.5


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        (lambda s, b: b.connect_tcp("h", 1, timeout=5), httpcore.ConnectTimeout),
        (lambda s, b: s.start_tls(ssl_context=None, timeout=5), httpcore.ConnectTimeout),
        (lambda s, b: s.read(1, timeout=5), httpcore.ReadTimeout),
        (lambda s, b: s.write(b"x", timeout=5), httpcore.WriteTimeout),
    ],
    ids=["connect", "tls", "read", "write"],
)
def test_no_time_left_is_a_timeout_without_touching_the_socket(
    operation: Any, expected: type[Exception]
) -> None:
    inner = _Recorder()
    backend = CappedBackend(inner)
    stream = backend.connect_tcp("h", 1)
    inner.timeouts.clear()
    with exchange_deadline(time.monotonic()), pytest.raises(expected):
        operation(stream, backend)
    assert inner.timeouts == []


def test_the_pool_keeps_twenty_idle_connections_and_caps_none() -> None:
    with DefaultHttpxClient() as client:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool._max_keepalive_connections == 20
        assert pool._max_connections == sys.maxsize  # httpcore's "no cap"
        assert isinstance(pool._network_backend, CappedBackend)
    assert POOL_LIMITS.max_keepalive_connections == 20
    assert POOL_LIMITS.max_connections is None


def test_the_async_pool_wraps_httpcores_own_default_backend() -> None:
    client = DefaultAsyncHttpxClient(limits=httpx.Limits(max_keepalive_connections=3))
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert pool._max_keepalive_connections == 3
    assert isinstance(pool._network_backend, AsyncCappedBackend)
    asyncio.run(client.aclose())


def test_proxy_transports_httpx_builds_are_capped_and_the_callers_are_not() -> None:
    theirs = httpx.HTTPTransport()
    mounted = httpx.HTTPTransport()
    with DefaultHttpxClient(
        transport=theirs, mounts={"http://example.test": mounted}, proxy="http://127.0.0.1:9"
    ) as client:
        assert client._transport is theirs
        assert not isinstance(theirs._pool._network_backend, CappedBackend)
        assert not isinstance(mounted._pool._network_backend, CappedBackend)
        built = [t for t in client._mounts.values() if t is not mounted]
        assert built
        for transport in built:
            assert isinstance(transport._pool._network_backend, CappedBackend)  # type: ignore[union-attr]


def test_a_sync_client_still_does_not_import_asyncio() -> None:
    code = (
        "import sys; from aigen._transport import DefaultHttpxClient; "
        "from aigen._deadline import exchange_deadline; "
        "DefaultHttpxClient().close(); print('asyncio' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"
