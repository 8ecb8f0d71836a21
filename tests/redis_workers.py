"""What one spawned process of tests/test_redis_sharing.py does: call a fake provider as
fast as its rate limit lets it, from several threads (`Client`) or tasks (`AsyncClient`),
and count what came back."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import aigen
from aigen import AsyncClient, Client, RateLimit

API_KEY = "sk-sharing-test-key-0123456789"


def warm_up(_: int) -> None:
    """Import what a worker needs, once, before anything is timed."""
    import httpx  # noqa: F401
    import redis.asyncio  # noqa: F401

    import aigen.redis  # noqa: F401


def _options(base_url: str, redis_url: str | None, prefix: str, rpm: float) -> dict[str, Any]:
    store = None
    if redis_url is not None:
        from aigen.redis import RedisStore

        store = RedisStore.from_url(redis_url, prefix=prefix, timeout=2.0)
    return {
        "provider": "gemini",
        "api_key": API_KEY,
        "base_url": base_url,
        "max_retries": 0,
        "rate_limit": RateLimit(requests_per_minute=rpm, store=store),
    }


def work(
    kind: str,
    base_url: str,
    redis_url: str | None,
    prefix: str,
    rpm: float,
    start: float,
    seconds: float,
) -> dict[str, int]:
    """Call from `start` (wall time) for `seconds`; the counts of answers and 429s."""
    counts = {"ok": 0, "429": 0}
    lock = threading.Lock()
    end = start + seconds

    def count(name: str) -> None:
        with lock:
            counts[name] += 1

    options = _options(base_url, redis_url, prefix, rpm)
    time.sleep(max(0.0, start - time.time()))
    if kind == "sync":
        with Client(**options) as client:

            def loop() -> None:
                while time.time() < end:
                    try:
                        client.generate("a fox")
                        count("ok")
                    except aigen.RateLimitError:
                        count("429")

            threads = [threading.Thread(target=loop) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return counts

    async def main() -> None:
        async with AsyncClient(**options) as client:

            async def loop() -> None:
                while time.time() < end:
                    try:
                        await client.generate("a fox")
                        count("ok")
                    except aigen.RateLimitError:
                        count("429")

            await asyncio.gather(*(loop() for _ in range(8)))
        store = options["rate_limit"].store
        if store is not None:
            await store.aclose()

    asyncio.run(main())
    return counts


def call_once(
    kind: str, base_url: str, redis_url: str, prefix: str, protect: str, start: float
) -> tuple[str, float]:
    """One call at `start` (wall time) through a Redis-backed limiter (`protect="limit"`)
    or breaker (`"breaker"`, 2 failures, 1 s cool-down); what it ended with, and how long
    it took."""
    from aigen import CircuitBreaker
    from aigen.redis import RedisStore

    store = RedisStore.from_url(redis_url, prefix=prefix, timeout=2.0)
    options: dict[str, Any] = {
        "provider": "gemini",
        "api_key": API_KEY,
        "base_url": base_url,
        "max_retries": 0,
    }
    if protect == "limit":
        options["rate_limit"] = RateLimit(requests_per_minute=6000, store=store)
    else:
        options["circuit_breaker"] = CircuitBreaker(
            failure_threshold=2, reset_timeout=1.0, store=store
        )
    time.sleep(max(0.0, start - time.time()))
    began = time.monotonic()

    def ended(outcome: object) -> tuple[str, float]:
        return type(outcome).__name__, time.monotonic() - began

    if kind == "sync":
        with Client(**options) as client:
            try:
                return ended(client.generate("a fox"))
            except aigen.GenerationError as error:
                return ended(error)

    async def main() -> tuple[str, float]:
        async with AsyncClient(**options) as client:
            try:
                result = ended(await client.generate("a fox"))
            except aigen.GenerationError as error:
                result = ended(error)
        await store.aclose()
        return result

    return asyncio.run(main())
