"""httpx clients whose socket operations all end by the call's deadline.

httpx's timeouts are per socket operation, so a server trickling a valid answer a byte at
a time never trips them. Inside `exchange_deadline(at)`, each connect, TLS handshake, read
and write of a `DefaultHttpxClient` / `DefaultAsyncHttpxClient` is capped to the time left.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import Any

import httpcore
import httpx

__all__ = [
    "POOL_LIMITS",
    "DefaultAsyncHttpxClient",
    "DefaultHttpxClient",
    "current_deadline",
    "exchange_deadline",
]

# No default cap below what callers ask for: a FastAPI app awaiting hundreds of images
# at once must not queue in the pool. Idle connections kept are bounded (httpx's own 20):
# httpcore rescans every idle connection on each request, so keeping 100 made 200 calls
# in flight five times slower than raw httpx (docs/performance.md).
POOL_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=20)

# A ContextVar, not a thread-local: each thread starts with none set, and each asyncio task
# runs in a copy of its creator's context, so one call's deadline never leaks into another's.
_DEADLINE: ContextVar[float | None] = ContextVar("aigen_exchange_deadline", default=None)
_Secs = float | None
_SockOpts = Iterable[tuple[Any, ...]]  # httpcore's socket options (its alias is not public)


def current_deadline() -> float | None:
    """The `time.monotonic()` instant the current exchange must end by, or None."""
    return _DEADLINE.get()


def exchange_deadline(at: float | None) -> AbstractContextManager[None]:
    """`with exchange_deadline(at):` caps the socket operations inside it to end by `at`.

    `at` is a `time.monotonic()` instant. Inside an enclosing deadline the earlier of the
    two holds: a nested one can shorten the time left, never extend it. `None` adds no
    deadline (the enclosing one, if any, still holds) and costs almost nothing.
    """
    # None shares one manager that does nothing: most calls set no deadline.
    return _NO_DEADLINE if at is None else _Deadline(at)


class _Deadline:
    __slots__ = ("_at", "_token")

    def __init__(self, at: float | None) -> None:
        self._at = at
        self._token: Token[float | None] | None = None

    def __enter__(self) -> None:
        at, outer = self._at, _DEADLINE.get()
        if at is not None and (outer is None or at < outer):
            self._token = _DEADLINE.set(at)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _DEADLINE.reset(self._token)
            self._token = None


_NO_DEADLINE = _Deadline(None)  # never sets a token, so one can serve every thread and task


def _capped(timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout`, shortened to the time left before the deadline; `expired` once none is."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the call's deadline passed")
    return left if timeout is None or left < timeout else timeout


class _CappedStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: _Secs = None) -> bytes:
        return self._stream.read(max_bytes, _capped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: _Secs = None) -> None:
        self._stream.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: _Secs = None
    ) -> httpcore.NetworkStream:
        # httpcore gives the handshake the connect timeout, so it fails as a connect would.
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _CappedStream(self._stream.start_tls(ssl_context, server_hostname, timeout=capped))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _CappedBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: _Secs = None,
        local_address: str | None = None,
        socket_options: _SockOpts | None = None,
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        # Keywords, as httpcore itself calls a backend: the names are its API, not the order.
        stream = self._backend.connect_tcp(
            host, port, timeout=capped, local_address=local_address, socket_options=socket_options
        )
        return _CappedStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: _Secs = None, socket_options: _SockOpts | None = None
    ) -> httpcore.NetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _CappedStream(
            self._backend.connect_unix_socket(path, timeout=capped, socket_options=socket_options)
        )

    def sleep(self, seconds: float) -> None:
        # httpcore sleeps between connect retries: never past the deadline.
        left = _capped(seconds, httpcore.ConnectTimeout)
        self._backend.sleep(seconds if left is None else left)


class _AsyncCappedStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: _Secs = None) -> bytes:
        return await self._stream.read(max_bytes, _capped(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: _Secs = None) -> None:
        await self._stream.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: _Secs = None
    ) -> httpcore.AsyncNetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        return _AsyncCappedStream(
            await self._stream.start_tls(ssl_context, server_hostname, timeout=capped)
        )

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AsyncCappedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: _Secs = None,
        local_address: str | None = None,
        socket_options: _SockOpts | None = None,
    ) -> httpcore.AsyncNetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        stream = await self._backend.connect_tcp(
            host, port, timeout=capped, local_address=local_address, socket_options=socket_options
        )
        return _AsyncCappedStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: _Secs = None, socket_options: _SockOpts | None = None
    ) -> httpcore.AsyncNetworkStream:
        capped = _capped(timeout, httpcore.ConnectTimeout)
        stream = await self._backend.connect_unix_socket(
            path, timeout=capped, socket_options=socket_options
        )
        return _AsyncCappedStream(stream)

    async def sleep(self, seconds: float) -> None:
        left = _capped(seconds, httpcore.ConnectTimeout)
        await self._backend.sleep(seconds if left is None else left)


def _cap_built_transports(client: httpx.Client | httpx.AsyncClient, kwargs: dict[str, Any]) -> None:
    """Cap the network backend of each transport httpx built itself for `client`."""
    # httpx has no public way to give its transports a network backend, and building them
    # here would lose what Client.__init__ works out (proxies from the environment, proxy=,
    # verify, cert, http2...). So httpx builds them, and each pool's backend is swapped
    # before it has connected (a pool hands it to each new connection). `_transport`,
    # `_mounts`, `_pool` and `_network_backend` are private but alike in httpx 0.27-0.29 on
    # httpcore 1.x; should one change, the transport stays as it was (uncapped, correct)
    # and tests/test_transport.py fails. Transports the caller passed in are left alone.
    theirs = [kwargs.get("transport"), *(kwargs.get("mounts") or {}).values()]
    for transport in (client._transport, *client._mounts.values()):
        built = isinstance(transport, (httpx.HTTPTransport, httpx.AsyncHTTPTransport))
        if not built or any(transport is t for t in theirs):
            continue
        pool: Any = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = _CappedBackend(backend)
        elif isinstance(backend, httpcore.AsyncNetworkBackend):
            pool._network_backend = _AsyncCappedBackend(backend)


class DefaultHttpxClient(httpx.Client):
    """An `httpx.Client` whose own connections obey `exchange_deadline`.

    Takes `httpx.Client`'s keyword arguments, with `limits` defaulting to `POOL_LIMITS`.
    The transports httpx builds from them (default, proxies) are capped; a `transport=` or
    `mounts=` passed in is used as it is. Not for `http2=True`: there calls share a
    connection, and httpcore fails all its streams once one read times out.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("limits", POOL_LIMITS)
        super().__init__(**kwargs)
        _cap_built_transports(self, kwargs)


class DefaultAsyncHttpxClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` whose own connections obey `exchange_deadline`; as above."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("limits", POOL_LIMITS)
        super().__init__(**kwargs)
        _cap_built_transports(self, kwargs)
