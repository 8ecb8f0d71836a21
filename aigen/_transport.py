"""httpx clients whose socket operations all end by the call's deadline.

httpx's timeouts are per socket operation, so a server trickling a valid answer a byte at
a time never trips them. Inside `exchange_deadline(at)` (aigen/_deadline.py), each connect,
TLS handshake, read and write of a `DefaultHttpxClient` / `DefaultAsyncHttpxClient` is
capped to the time left (aigen/_capped_streams.py). aigen's own pools are made this way.
`checked_timeout` turns a client's `timeout=` into the `httpx.Timeout` it sends with.
"""

from __future__ import annotations

import math
from typing import Any, cast

import httpx

from ._errors import ConfigurationError

__all__ = ["POOL_LIMITS", "DefaultAsyncHttpxClient", "DefaultHttpxClient", "checked_timeout"]

# No default cap below what callers ask for: a FastAPI app awaiting hundreds of images
# at once must not queue in the pool. Idle connections kept are bounded (httpx's own 20):
# httpcore rescans every idle connection on each request, so keeping 100 made 200 calls
# in flight five times slower than raw httpx (docs/performance.md).
POOL_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=20)


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
        import httpcore  # httpx has imported it by now, to build the transport

        from ._capped_streams import AsyncCappedBackend, CappedBackend

        pool: Any = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.NetworkBackend):
            pool._network_backend = CappedBackend(backend)
        elif isinstance(backend, httpcore.AsyncNetworkBackend):
            pool._network_backend = AsyncCappedBackend(backend)


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


_TIMEOUT_HELP = (
    "pass seconds per attempt as a positive, finite number (e.g. timeout=120.0), or an "
    "httpx.Timeout whose parts are such numbers (or None for no limit on that part)"
)


def checked_timeout(timeout: object) -> httpx.Timeout:
    """`timeout` as an `httpx.Timeout`, refused now if any part is not a positive, finite
    number of seconds: 0 would fail every attempt as a "connection error", and a negative,
    nan or inf one would raise a bare ValueError or OverflowError at the first call."""
    if isinstance(timeout, httpx.Timeout):
        parts = {
            "connect": timeout.connect,
            "read": timeout.read,
            "write": timeout.write,
            "pool": timeout.pool,
        }
        for name, value in parts.items():
            if value is not None:
                _check_seconds(f"timeout.{name}", value)
        return timeout
    if timeout is None:  # as in httpx: no limit (the deadline, if any, still holds)
        return httpx.Timeout(None)
    _check_seconds("timeout", timeout)
    return httpx.Timeout(cast(float, timeout))


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{name}={value!r} is a {type(value).__name__}, not a number of seconds: "
            + _TIMEOUT_HELP
        )
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name}={value!r} is not a usable timeout: {_TIMEOUT_HELP}")
