"""httpcore network backends whose every socket operation ends by the exchange's deadline.

Kept apart from aigen/_transport.py so that `from aigen import Client` does not import
httpcore (about 55 ms): httpx itself only imports it when a client is built.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from ._deadline import current_deadline

__all__ = ["AsyncCappedBackend", "CappedBackend"]

_Secs = float | None
_SockOpts = Iterable[tuple[Any, ...]]  # httpcore's socket options (its alias is not public)


def _capped(timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout`, shortened to the time left before the deadline; `expired` once none is."""
    at = current_deadline()
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


class CappedBackend(httpcore.NetworkBackend):
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


class AsyncCappedBackend(httpcore.AsyncNetworkBackend):
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
