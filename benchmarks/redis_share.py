"""`python -m benchmarks.redis_share [--quick]`: one quota shared through Redis.

Two tables (docs/performance.md, "Many processes through Redis"):

- the limiter's own cost per call: the two store operations a successful call makes
  (`Reserve`, then `ChangeRate`), on `MemoryStore` and on `RedisStore` over loopback, from
  `Client` (sync) and `AsyncClient` (async); the median of rounds;
- N processes (2, 4, 8; half `Client`, half `AsyncClient`) offered 3x a fake provider's
  quota (a token bucket of 40 a second, 6 early at most), each limited to 95% of it:
  with the shared store, and without it (each process limiting itself). What reached the
  fake, the 429s it answered, and the share of the quota used.

Redis: `AIGEN_BENCH_REDIS_URL`, else a `redis-server` from the PATH, started on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
import uuid
from typing import Any

import aigen
from aigen import AsyncClient, Client, MemoryStore, RateLimit
from aigen._store import ChangeRate, RateChange, Reserve
from aigen.testing import FakeGemini, Outcome, rate_limited, success

API_KEY = "bench-key-not-secret"
QUOTA, TOLERANCE = 40.0, 6  # per second; requests a token bucket lets come early


class QuotaGemini(FakeGemini):
    """A fake Gemini keeping its quota as a GCRA bucket, answering 429 above it."""

    def __init__(self) -> None:
        super().__init__(api_key=API_KEY)
        self._lock_q = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._arrival, self.accepted, self.refused = 0.0, [], 0

    def _next_outcome(self) -> Outcome:
        now, interval = time.monotonic(), 1.0 / QUOTA
        with self._lock_q:
            arrival = max(self._arrival, now)
            if arrival - now > interval * TOLERANCE:
                self.refused += 1
                return rate_limited(0.1)
            self._arrival = arrival + interval
            self.accepted.append(now)
            return success()


def _limiter_cost(store: Any, rounds: int, calls: int) -> dict[str, float]:
    """Median ms a call spends in its two limiter operations, sync and async."""
    ops = (Reserve("bench", 0.0, 1, 1e9), ChangeRate("bench", RateChange(step=1.0), 1e9))

    def sync_round() -> float:
        began = time.perf_counter()
        for _ in range(calls):
            for op in ops:
                op.run(store)
        return (time.perf_counter() - began) / calls * 1e3

    async def async_rounds() -> list[float]:
        samples = []
        for _ in range(rounds):
            began = time.perf_counter()
            for _ in range(calls):
                for op in ops:
                    await op.arun(store)
            samples.append((time.perf_counter() - began) / calls * 1e3)
        if hasattr(store, "aclose"):
            await store.aclose()
        return samples

    return {
        "sync": statistics.median(sync_round() for _ in range(rounds)),
        "async": statistics.median(asyncio.run(async_rounds())),
    }


def _work(
    kind: str, base_url: str, redis_url: str | None, prefix: str, start: float, seconds: float
) -> None:
    """One process: call as fast as the limiter allows from `start` for `seconds`."""
    store = None
    if redis_url is not None:
        from aigen.redis import RedisStore

        store = RedisStore.from_url(redis_url, prefix=prefix, timeout=2.0)
    options: dict[str, Any] = {
        "provider": "gemini",
        "api_key": API_KEY,
        "base_url": base_url,
        "max_retries": 0,
        # A little under the quota, as docs/protection.md advises: a limiter at exactly the
        # provider's rate uses up the provider's tolerance with every late request.
        "rate_limit": RateLimit(requests_per_minute=QUOTA * 60 * 0.95, store=store),
    }
    end = start + seconds
    time.sleep(max(0.0, start - time.time()))
    if kind == "sync":
        with Client(**options) as client:

            def loop() -> None:
                while time.time() < end:
                    with contextlib.suppress(aigen.RateLimitError):
                        client.generate("a fox")

            threads = [threading.Thread(target=loop) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return

    async def main() -> None:
        async with AsyncClient(**options) as client:

            async def loop() -> None:
                while time.time() < end:
                    with contextlib.suppress(aigen.RateLimitError):
                        await client.generate("a fox")

            await asyncio.gather(*(loop() for _ in range(8)))
        if store is not None:
            await store.aclose()

    asyncio.run(main())


def _warm(_: int) -> None:
    import aigen.redis  # noqa: F401


def _share(fake: QuotaGemini, n: int, redis_url: str | None, seconds: float) -> dict[str, Any]:
    fake.reset()
    kinds = ["sync", "async"] * (n // 2)
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        pool.map(_warm, range(n * 2), chunksize=1)
        start, prefix = time.time() + 1.0, f"bench-{uuid.uuid4().hex[:8]}"
        jobs = [(kind, fake.base_url, redis_url, prefix, start, seconds) for kind in kinds]
        pool.starmap(_work, jobs, chunksize=1)
    accepted = fake.accepted
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    sent = len(accepted) + fake.refused
    return {
        "processes": n,
        "store": "redis" if redis_url else "memory (each its own)",
        "offered": f"{n}x quota" if redis_url is None else f"{n}x quota, held to 1x",
        "sent": sent,
        "429s": fake.refused,
        "429_share": fake.refused / max(1, sent),
        "quota_used": len(accepted) / (QUOTA * span) if span else 0.0,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_share")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs")
    args = parser.parse_args(argv)
    rounds, calls, seconds = (3, 300, 2.0) if args.quick else (7, 2000, 4.0)
    url, server = os.environ.get("AIGEN_BENCH_REDIS_URL"), None
    if not url:
        binary = shutil.which("redis-server")
        if binary is None:
            print("no redis-server on the PATH and no AIGEN_BENCH_REDIS_URL")
            return 1
        port = _free_port()
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
    try:
        from aigen.redis import RedisStore

        print("limiter cost per call (Reserve + ChangeRate), median ms:")
        for name, store in (
            ("MemoryStore", MemoryStore()),
            ("RedisStore", RedisStore.from_url(url, prefix=f"bench-{uuid.uuid4().hex[:6]}")),
        ):
            cost = _limiter_cost(store, rounds, calls)
            print(f"  {name:12} sync {cost['sync']:.3f}   async {cost['async']:.3f}")
        print(f"\nN processes offered N x a {QUOTA:.0f}/s quota for {seconds:.0f} s:")
        with QuotaGemini() as fake:
            for n in (2, 4, 8):
                for shared in (url, None):
                    row = _share(fake, n, shared, seconds)
                    print(
                        f"  N={n} {row['store']:22} sent {row['sent']:4}  429s {row['429s']:4}"
                        f" ({row['429_share']:.1%})  quota used {row['quota_used']:.0%}"
                    )
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
