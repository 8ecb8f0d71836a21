"""`RedisStore`s for the shared store suite (tests/test_store.py), on the caller's clock.

The suite's cases give explicit times, so these stores use `time_source="caller"`: the
scripts' arithmetic is what the suite checks; tests/test_redis.py checks Redis' own clock.
The async variant carries out every method through its coroutine twin on one event loop,
so a suite written with plain calls checks `redis.asyncio` too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aigen.redis import RedisStore

TWINNED = ("reserve", "refund", "hold_until", "change_rate", "admit", "record")


class AwaitedStore:
    """A `RedisStore` whose store methods each await the `a`-twin on one loop."""

    def __init__(self, store: RedisStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store, self.loop = store, loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if name not in TWINNED:
            return attribute
        twin = getattr(self.store, "a" + name)
        return lambda *args: self.loop.run_until_complete(twin(*args))


@contextmanager
def redis_store_factory(url: str, *, asynchronous: bool) -> Iterator[Callable[[], Any]]:
    """Fresh stores on `url`, each under its own prefix, closed at the end."""
    loop = asyncio.new_event_loop()
    made: list[RedisStore] = []

    def factory() -> Any:
        store = RedisStore.from_url(
            url, prefix=f"test-{uuid.uuid4().hex[:8]}", time_source="caller", timeout=2.0
        )
        made.append(store)
        return AwaitedStore(store, loop) if asynchronous else store

    try:
        yield factory
    finally:
        for store in made:
            loop.run_until_complete(store.aclose())
            store.close()
        loop.close()
