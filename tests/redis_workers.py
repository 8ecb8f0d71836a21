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
