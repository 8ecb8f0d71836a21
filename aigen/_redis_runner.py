"""How `aigen.redis.RedisStore` runs its scripts: the clients, the timeout, the fallback.

A step is a script name, its keys and arguments, what the in-process store would do
instead, and how to read the answer. `Runner.run` carries it out on redis-py's sync
client, `Runner.arun` on `redis.asyncio` (one client per event loop: an asyncio
connection belongs to the loop that opened it). When Redis does not answer in time the
step goes to the local store, or raises `StoreUnavailableError`, and Redis is skipped for
`RETRY_INTERVAL` so a Redis that is down does not cost every call a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from . import _redis_scripts as lua
from ._errors import ConfigurationError, StoreUnavailableError

__all__ = ["RETRY_INTERVAL", "Runner", "Step", "client_options", "safe_location"]

logger = logging.getLogger("aigen")

T = TypeVar("T")
OnUnavailable = Literal["local", "raise"]

RETRY_INTERVAL = 1.0
# Connections per event loop: a script takes well under a millisecond, so a few serve
# hundreds of concurrent calls.
ASYNC_CONNECTIONS = 16
SCRIPTS = {
    "reserve": lua.RESERVE,
    "refund": lua.REFUND,
    "hold_until": lua.HOLD,
    "change_rate": lua.CHANGE_RATE,
    "admit": lua.ADMIT,
    "record": lua.RECORD,
}


@dataclass(frozen=True, slots=True)
class Step(Generic[T]):
    """One store operation as a script call, with its in-process stand-in."""

    script: str
    keys: list[str]
    args: list[object]
    local: Callable[[], T]
    read: Callable[[Any], T]
    gate: bool = False
    """Whether a call waits on this step before it is sent (`reserve`, `admit`): only
    these raise under `on_unavailable="raise"`. The others (a refund, a hold, a rate
    change, an outcome) come after an answer or while giving back, and go to the local
    store: a paid image must not be lost, nor a cancellation hidden, for want of them."""


def client_options(asynchronous: bool, timeout: float) -> dict[str, Any]:
    """The keywords of a redis-py client made by aigen: short timeouts, no retries."""
    from redis.backoff import NoBackoff

    if asynchronous:
        from redis.asyncio.retry import Retry
    else:
        from redis.retry import Retry  # type: ignore[assignment]

    # redis-py retries a failed command with a backoff by default: seconds a call would
    # wait on a Redis that is down, where aigen falls back (or raises) at once instead.
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }


def safe_location(url: str) -> str:
    """`url` without its user, password and query: what a repr, log or error may show."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or 'localhost'}{port}{parts.path}"
    except ValueError:
        return "(an unreadable URL)"


def describe(client: Any) -> str:
    """Where a redis-py client connects, without its credentials."""
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return type(client).__name__
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"


class Runner:
    """Runs `Step`s on Redis, falling back (or raising) while it is unavailable."""

    def __init__(
        self,
        client: Any,
        async_client: Any,
        url: str | None,
        *,
        on_unavailable: OnUnavailable,
        timeout: float,
    ) -> None:
        from redis.exceptions import ConnectionError, TimeoutError

        self.sync = client
        self.async_client = async_client
        self.url = url
        self.on_unavailable = on_unavailable
        self.timeout = timeout
        self.where = safe_location(url) if url else describe(client or async_client)
        self._errors = (ConnectionError, TimeoutError, OSError, asyncio.TimeoutError)
        self._loop_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._scripts: dict[tuple[int, str], Any] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._outage = False

    def _script(self, client: Any, name: str) -> Any:
        # register_script loads nothing yet: redis-py sends EVALSHA, and on NOSCRIPT (a
        # restarted or flushed Redis) loads the script and sends it again.
        script = self._scripts.get((id(client), name))
        if script is None:
            script = self._scripts[(id(client), name)] = client.register_script(SCRIPTS[name])
        return script

    def _loop_client(self) -> Any:
        if self.async_client is not None:
            return self.async_client
        if self.url is None:
            return None
        loop = asyncio.get_running_loop()
        client = self._loop_clients.get(loop)
        if client is None:
            import redis.asyncio as redis_async

            # A blocking pool: hundreds of tasks of one loop queue for a few connections
            # (the default pool refuses the one past its limit: no outage, but it looks
            # like one).
            pool = redis_async.BlockingConnectionPool.from_url(
                self.url,
                max_connections=ASYNC_CONNECTIONS,
                timeout=self.timeout,
                **client_options(True, self.timeout),
            )
            client = self._loop_clients[loop] = redis_async.Redis(connection_pool=pool)
        return client

    def run(self, step: Step[T]) -> T:
        """Carry out `step` with the sync client."""
        if time.monotonic() < self._down_until:
            return self._unavailable(step, None)
        if self.sync is None:
            raise ConfigurationError("this RedisStore has only an async client: use AsyncClient")
        try:
            answer = self._script(self.sync, step.script)(keys=step.keys, args=step.args)
        except self._errors as error:
            self._went_down(error)
            return self._unavailable(step, error)
        self._answered()
        return step.read(answer)

    async def arun(self, step: Step[T]) -> T:
        """Carry out `step` without blocking the event loop, within `timeout`."""
        if time.monotonic() < self._down_until:
            return self._unavailable(step, None)
        try:
            client = self._loop_client()
            if client is None:  # a sync client only: run it off the event loop
                script = self._script(self.sync, step.script)
                call = asyncio.to_thread(script, keys=step.keys, args=step.args)
            else:
                call = self._script(client, step.script)(keys=step.keys, args=step.args)
            if self.async_client is None and client is not None:
                # aigen's own client: its socket and pool timeouts bound every wait, and
                # a wait_for (a task per operation) would double the cost of a fast one.
                answer = await call
            else:
                answer = await asyncio.wait_for(call, self.timeout)
        except self._errors as error:
            self._went_down(error)
            return self._unavailable(step, error)
        self._answered()
        return step.read(answer)

    def close(self) -> None:
        """Close the sync client's connections, if aigen made it (`from_url`)."""
        if self.url is not None and self.sync is not None:
            self.sync.close()

    async def aclose(self) -> None:
        """Close the connections aigen opened for the running event loop."""
        client = self._loop_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            # The pool was made here and given to the client, which then leaves it open.
            await client.aclose(close_connection_pool=True)

    def _went_down(self, error: BaseException) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_INTERVAL
            first, self._outage = not self._outage, True
        if first:
            then = (
                "limits are kept in this process until it is back"
                if self.on_unavailable == "local"
                else "calls fail with StoreUnavailableError until it is back"
            )
            # The error's type only: its text may carry the server's address details.
            logger.warning(
                "aigen: the shared store at %s is unavailable (%s); %s",
                self.where,
                type(error).__name__,
                then,
            )

    def _answered(self) -> None:
        if not self._outage:
            return
        with self._lock:
            back, self._outage = self._outage, False
        if back:
            logger.info("aigen: the shared store at %s answers again", self.where)

    def _unavailable(self, step: Step[T], error: BaseException | None) -> T:
        if self.on_unavailable == "raise" and step.gate:
            reason = f" ({type(error).__name__})" if error is not None else ""
            raise StoreUnavailableError(
                f"the shared store at {self.where} is unavailable{reason}; nothing was sent"
            )
        return step.local()
