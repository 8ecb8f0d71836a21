"""Several spawned processes (two on `Client`, two on `AsyncClient`) share one quota
through a real Redis, against a fake provider on 127.0.0.1 that answers 429 above its
quota (a token bucket, as providers count: 40 a second, 10 at once at most). With the
shared store almost nothing is refused and the quota is nearly all used; the control (the
same load, each process limiting itself) collects 429s."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from aigen.testing import FakeGemini, Outcome, rate_limited, server_error, success

from .redis_workers import API_KEY, call_once, warm_up, work

QUOTA, WINDOW = 40, 1.0  # the provider's: 40 requests a second...
TOLERANCE = 10  # ...and up to 10 early (a quarter second): a token bucket of 10
SECONDS = 3.0
# Each process's limit is the whole quota, a little under: the store divides it.
RPM = QUOTA / WINDOW * 60 * 0.97
KINDS = ["sync", "sync", "async", "async"]


class QuotaGemini(FakeGemini):
    """A fake Gemini that keeps its quota as a GCRA bucket and refuses what is over it."""

    def __init__(self) -> None:
        super().__init__(api_key=API_KEY)
        self._quota_lock = threading.Lock()
        self._arrival = 0.0
        self.accepted: list[float] = []
        self.refused = 0

    def reset(self) -> None:
        with self._quota_lock:
            self._arrival = 0.0
            self.accepted.clear()
            self.refused = 0

    def _next_outcome(self) -> Outcome:
        now, interval = time.monotonic(), WINDOW / QUOTA
        with self._quota_lock:
            arrival = max(self._arrival, now)
            if arrival - now > interval * TOLERANCE:
                self.refused += 1
                return rate_limited(0.1)
            self._arrival = arrival + interval
            self.accepted.append(now)
            return success()


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    with multiprocessing.get_context("spawn").Pool(len(KINDS)) as workers:
        # Each worker imports aigen, redis-py and httpx now, not in the measured seconds.
        workers.map(warm_up, range(len(KINDS) * 2), chunksize=1)
        yield workers


@pytest.fixture(scope="module")
def fake() -> Iterator[QuotaGemini]:
    with QuotaGemini() as server:
        yield server


def run(pool: Any, fake: QuotaGemini, redis_url: str | None) -> dict[str, Any]:
    fake.reset()
    prefix = f"share-{uuid.uuid4().hex[:8]}"
    start = time.time() + 1.0  # every process is up and waiting by then
    jobs = [(kind, fake.base_url, redis_url, prefix, RPM, start, SECONDS) for kind in KINDS]
    results = pool.starmap(work, jobs, chunksize=1)
    accepted = fake.accepted
    span = accepted[-1] - accepted[0] if len(accepted) > 1 else 0.0
    return {
        "prefix": prefix,
        "sent": len(accepted) + fake.refused,
        "refused": fake.refused,
        "refused_share": fake.refused / max(1, len(accepted) + fake.refused),
        "quota_used": len(accepted) / (QUOTA / WINDOW * span) if span else 0.0,
        "client_429s": sum(r["429"] for r in results),
    }


def test_processes_sharing_a_redis_store_share_the_quota(
    pool: Any, fake: QuotaGemini, redis_url: str
) -> None:
    seen = run(pool, fake, redis_url)
    print(f"shared: {seen}")
    assert seen["refused_share"] <= 0.01, seen
    assert seen["quota_used"] >= 0.90, seen
    raw = redis.Redis.from_url(redis_url)
    keys = list(raw.scan_iter(f"{seen['prefix']}:*"))
    assert len(keys) == 1  # one bucket for all four processes
    for key in keys:
        assert raw.pttl(key) > 0
        assert API_KEY.encode() not in key + repr(raw.hgetall(key)).encode()
    raw.close()


def test_the_control_without_the_store_collects_429s(pool: Any, fake: QuotaGemini) -> None:
    seen = run(pool, fake, None)
    print(f"control: {seen}")
    # Four processes at a whole quota each: their adaptive limiters back off on the 429s
    # (so far fewer than 3 in 4 are refused), but they still collect plenty.
    assert seen["refused"] >= 10, seen
    assert seen["refused_share"] > 0.05, seen


def test_one_processs_429_hold_delays_the_others(pool: Any, redis_url: str) -> None:
    prefix = f"hold-{uuid.uuid4().hex[:8]}"
    with FakeGemini(api_key=API_KEY) as fake:
        base = (fake.base_url, redis_url, prefix, "limit")
        fake.script(rate_limited(3.0))  # RetryInfo: 3 s
        first = pool.apply(call_once, ("sync", *base, time.time()))
        assert first[0] == "RateLimitError"
        later = pool.starmap(call_once, [(kind, *base, time.time() + 0.2) for kind in KINDS])
    assert [name for name, _ in later] == ["GenerationResponse"] * len(KINDS)
    # The hold began ~0.2 s (and a busy machine's delays) before these: each still waited.
    assert min(took for _, took in later) >= 1.5, later


def test_a_breaker_opened_by_one_process_stops_the_others_and_one_probes(
    pool: Any, redis_url: str
) -> None:
    prefix = f"breaker-{uuid.uuid4().hex[:8]}"
    with FakeGemini(api_key=API_KEY, default=server_error()) as failing:
        base = (failing.base_url, redis_url, prefix, "breaker")
        opened = pool.starmap(call_once, [("sync", *base, time.time())] * 2)
        assert [name for name, _ in opened] == ["ServerError"] * 2
        failing.default = success()
        stopped = pool.apply(call_once, ("async", *base, time.time()))
        assert stopped[0] == "CircuitOpenError"
        assert len(failing.requests) == 2  # nothing sent
        time.sleep(1.1)  # the cool-down
        failing.script(success(delay=2.0))  # the probe takes its time, the others meet it
        at_once = pool.starmap(call_once, [(kind, *base, time.time() + 0.5) for kind in KINDS])
        names = sorted(name for name, _ in at_once)
        assert names == ["CircuitOpenError"] * 3 + ["GenerationResponse"], at_once
        assert len(failing.requests) == 3  # one probe in all
        after = pool.apply(call_once, ("async", *base, time.time()))
        assert after[0] == "GenerationResponse"
