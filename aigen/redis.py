"""`RedisStore`: one rate limit and one circuit breaker for every process, kept in Redis.

```python
from aigen import CircuitBreaker, Client, RateLimit
from aigen.redis import RedisStore            # pip install "aigen[redis]"

store = RedisStore.from_url("redis://localhost:6379/0")
client = Client(
    rate_limit=RateLimit(requests_per_minute=300, burst=5, store=store),
    circuit_breaker=CircuitBreaker(store=store),
)
```

Every store operation (aigen/_store.py) is one Lua script (aigen/_redis_scripts.py), so
each step is atomic across processes. One store serves `Client` (redis-py's sync client)
and `AsyncClient` (`redis.asyncio`, one connection pool per event loop) alike.
Neither `import aigen` nor `import aigen.redis` imports redis-py: making a store does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ._errors import ConfigurationError
from ._memory_store import MemoryStore
from ._redis_runner import OnUnavailable, Runner, client_options, safe_location
from ._redis_steps import Steps
from ._store import CallOutcome, CircuitVerdict, RateChange

if TYPE_CHECKING:
    import redis as redis_sync
    import redis.asyncio as redis_async

__all__ = ["RedisStore"]

TimeSource = Literal["redis", "caller"]


class RedisStore:
    """A `RateLimitStore` and a `CircuitStore` in Redis, shared by every process using it.

    - `client` / `async_client`: redis-py clients (`redis.Redis`, `redis.asyncio.Redis`);
      give either or both, or use `from_url`. With a sync client only, `AsyncClient`
      runs it in a worker thread, so an event loop never blocks.
    - `prefix`: the start of every key: `aigen:{<bucket>}:rl` and `aigen:{<bucket>}:cb`
      (the braces are a Redis Cluster hash tag: one bucket's keys share a slot).
    - `on_unavailable`: while Redis cannot be reached, or answers slower than `timeout`,
      `"local"` carries on with an in-process `MemoryStore` (`store.local`) and logs one
      WARNING per outage; `"raise"` ends each call in `aigen.StoreUnavailableError`,
      nothing sent (only the steps a call waits on before sending raise: what comes after
      an answer, or gives back a slot, goes to `store.local`). Either way Redis is tried
      again a second later, and used as soon as it answers.
    - `timeout`: seconds one store operation may take: the socket and pool timeouts of
      the clients `from_url` makes; on an async client of your own, a `wait_for`. Set
      the socket timeouts of a sync client you pass yourself.
    - `ttl`: seconds an unused bucket or circuit is kept (longer while a slot or hold it
      gave out still lies ahead).
    - `time_source`: `"redis"` (the default) reads Redis' `TIME` inside each script: the
      processes of several hosts compare instants (slots, holds, cool-downs), and one
      clock for all of them cannot drift apart. `"caller"` uses the time each operation
      carries (the client's clock): for tests on a fake clock.
    """

    def __init__(
        self,
        client: redis_sync.Redis | None = None,
        *,
        async_client: redis_async.Redis | None = None,
        prefix: str = "aigen",
        on_unavailable: OnUnavailable = "local",
        timeout: float = 0.25,
        ttl: float = 3600.0,
        time_source: TimeSource = "redis",
        _url: str | None = None,
    ) -> None:
        if client is None and async_client is None:
            raise ConfigurationError("RedisStore needs a client or an async_client (or from_url)")
        if on_unavailable not in ("local", "raise"):
            raise ConfigurationError('on_unavailable is "local" or "raise"')
        if time_source not in ("redis", "caller"):
            raise ConfigurationError('time_source is "redis" or "caller"')
        self.prefix = prefix
        self.ttl = ttl
        self.time_source: TimeSource = time_source
        self.local = MemoryStore()
        """The in-process store that stands in while Redis is unavailable."""
        self._steps = Steps(prefix, ttl, time_source, self.local)
        self._runner = Runner(
            client, async_client, _url, on_unavailable=on_unavailable, timeout=timeout
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "aigen",
        on_unavailable: OnUnavailable = "local",
        timeout: float = 0.25,
        ttl: float = 3600.0,
        time_source: TimeSource = "redis",
    ) -> RedisStore:
        """A store on the Redis (or Valkey) at `url`: `redis://`, `rediss://` or `unix://`.

        aigen makes the clients: the sync one here, an async one on first use in each
        event loop, each with `timeout` as its socket timeouts and no retries of its own.
        Credentials in the URL never appear in a repr, a log line or an error.
        """
        try:
            import redis
        except ImportError:  # pragma: no cover - the extra is not installed
            raise ConfigurationError(
                'aigen.redis needs redis-py: pip install "aigen[redis]"'
            ) from None
        try:
            client = redis.Redis.from_url(url, **client_options(False, timeout))
        except ValueError:
            raise ConfigurationError(
                f"not a Redis URL: {safe_location(url)} (redis://, rediss:// or unix://)"
            ) from None
        return cls(
            client,
            prefix=prefix,
            on_unavailable=on_unavailable,
            timeout=timeout,
            ttl=ttl,
            time_source=time_source,
            _url=url,
        )

    @property
    def on_unavailable(self) -> OnUnavailable:
        """What a call does while Redis is unavailable: `"local"` or `"raise"`."""
        return self._runner.on_unavailable

    def __repr__(self) -> str:
        return (
            f"RedisStore({self._runner.where}, prefix={self.prefix!r}, "
            f"on_unavailable={self.on_unavailable!r})"
        )

    def close(self) -> None:
        """Close the connections aigen opened (they reopen if the store is used again);
        clients you passed in are yours to close."""
        self._runner.close()

    async def aclose(self) -> None:
        """Close the connections this event loop opened (`AsyncClient` users: call it
        before the loop ends, as you close the client)."""
        await self._runner.aclose()

    def redis_key(self, key: str, kind: Literal["rl", "cb"]) -> str:
        """The Redis key of one bucket (`"rl"`) or one circuit (`"cb"`)."""
        return self._steps.redis_key(key, kind)

    # -- RateLimitStore and CircuitStore, with their coroutine twins ----------------------

    def reserve(
        self,
        key: str,
        now: float,
        burst: int,
        default_rate: float,
        max_wait: float | None = None,
        cost: int = 1,
    ) -> float:
        """See `aigen._store.Reserve`."""
        return self._runner.run(self._steps.reserve(key, now, burst, default_rate, max_wait, cost))

    async def areserve(
        self,
        key: str,
        now: float,
        burst: int,
        default_rate: float,
        max_wait: float | None = None,
        cost: int = 1,
    ) -> float:
        """`reserve`, awaited."""
        step = self._steps.reserve(key, now, burst, default_rate, max_wait, cost)
        return await self._runner.arun(step)

    def refund(self, key: str, now: float, default_rate: float, cost: int = 1) -> None:
        """See `aigen._store.Refund`."""
        self._runner.run(self._steps.refund(key, now, default_rate, cost))

    async def arefund(self, key: str, now: float, default_rate: float, cost: int = 1) -> None:
        """`refund`, awaited."""
        await self._runner.arun(self._steps.refund(key, now, default_rate, cost))

    def hold_until(self, key: str, until: float, default_rate: float) -> None:
        """See `aigen._store.Hold`."""
        self._runner.run(self._steps.hold_until(key, until, default_rate))

    async def ahold_until(self, key: str, until: float, default_rate: float) -> None:
        """`hold_until`, awaited."""
        await self._runner.arun(self._steps.hold_until(key, until, default_rate))

    def change_rate(self, key: str, change: RateChange, default_rate: float) -> float:
        """See `aigen._store.ChangeRate`."""
        return self._runner.run(self._steps.change_rate(key, change, default_rate))

    async def achange_rate(self, key: str, change: RateChange, default_rate: float) -> float:
        """`change_rate`, awaited."""
        return await self._runner.arun(self._steps.change_rate(key, change, default_rate))

    def admit(self, key: str, now: float, reset_timeout: float) -> CircuitVerdict:
        """See `aigen._store.Admit`."""
        return self._runner.run(self._steps.admit(key, now, reset_timeout))

    async def aadmit(self, key: str, now: float, reset_timeout: float) -> CircuitVerdict:
        """`admit`, awaited."""
        return await self._runner.arun(self._steps.admit(key, now, reset_timeout))

    def record(
        self, key: str, now: float, outcome: CallOutcome, probe: bool, failure_threshold: int
    ) -> None:
        """See `aigen._store.Record`."""
        self._runner.run(self._steps.record(key, now, outcome, probe, failure_threshold))

    async def arecord(
        self, key: str, now: float, outcome: CallOutcome, probe: bool, failure_threshold: int
    ) -> None:
        """`record`, awaited."""
        await self._runner.arun(self._steps.record(key, now, outcome, probe, failure_threshold))

    # -- inspection (as MemoryStore's), for tests and debugging ----------------------------

    def rate(self, key: str) -> float | None:
        """The current rate of one bucket in requests per minute, `None` if unknown."""
        sync = self._runner.sync
        if sync is None:
            raise ConfigurationError("rate() needs the sync client")
        rate = sync.hget(self.redis_key(key, "rl"), "rate")
        return None if rate is None else float(rate)

    def circuit_state(self, key: str) -> Literal["closed", "open", "half_open"]:
        """The state of one breaker (as far as Redis knows, with no cool-down applied)."""
        sync = self._runner.sync
        if sync is None:
            raise ConfigurationError("circuit_state() needs the sync client")
        state = sync.hget(self.redis_key(key, "cb"), "state")
        return "closed" if state is None else state.decode()
