"""The client-side rate limit (SPEC: Protecting the quota and the app; aigen/_ratelimit.py).

Three layers:

- the GCRA store (aigen/_store.py) and the AIMD limiter, with explicit times: the limiter
  only returns store operations (plain data), and `run` carries them out on the store the
  way a client's driver does;
- both clients, for each provider, with fake time (`make_client`'s default): every wait
  the limiter imposes before sending is a `fake_time.sleeps` entry and costs nothing;
- both clients in real time against the fake servers, with tiny rates, to show one
  limiter is shared by every thread of a `Client` and every task of an `AsyncClient`.

Fake time moves only when the code under test sleeps, so "three calls in a row" happen at
the same instant unless a wait separates them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pydantic
import pytest

import aigen
from aigen import (
    MemoryRateLimitStore,
    MemoryStore,
    RateLimit,
    RateLimitInfo,
    RateLimitStore,
    RetryPolicy,
)
from aigen._ratelimit import RateLimiter
from aigen._store import ChangeRate, Hold, RateChange, Refund, Reserve, StoreOp
from aigen.testing import (
    OPENAI_RATE_LIMIT_HEADERS,
    FakeOpenAI,
    FakeServer,
    fake_server,
    success,
    use_clock,
)

from .conftest import FakeTime
from .images import png
from .kits import run_concurrently, run_on_loop, with_headers

APPROX = 1e-6


# x-ratelimit-* tests read OpenAI's headers: Gemini sends none (docs/gemini.md).
openai_only = pytest.mark.parametrize("kit", ["openai"], indirect=True)


def client(make_client: Any, kit: Any, **kwargs: Any) -> Any:
    return make_client(provider=kit.name, **kwargs)


def limiter_of(made: Any) -> RateLimiter:
    limiter = made.target._engine.limiter
    assert limiter is not None
    return limiter


def rate_of(made: Any) -> float:
    """The current rate of a client's bucket, read off its (in-memory) store."""
    limiter = limiter_of(made)
    assert isinstance(limiter.store, MemoryStore)
    rate = limiter.store.rate(limiter.key)
    assert rate is not None
    return rate


def run(store: object, ops: StoreOp[Any] | Iterable[StoreOp[Any]]) -> Any:
    """Carry out one operation (answer: its answer) or a list of them, in order (answer:
    the list of their answers) on `store`, as a client's sync driver does."""
    if isinstance(ops, StoreOp):
        return ops.run(store)
    return [op.run(store) for op in ops]


def waits(store: RateLimitStore, now: float, count: int, *, burst: int, rate: float) -> list[float]:
    """`count` reservations at the same instant `now`."""
    return [store.reserve("k", now, burst, rate) for _ in range(count)]


class Limited:
    """A limiter, its store, and a wall clock (`now`) a unit test moves by hand.

    Each method asks the limiter for its operations at `now` and carries them out on the
    store, which is all a client does with them.
    """

    def __init__(
        self,
        requests_per_minute: float = 60,
        *,
        burst: int = 1,
        adaptive: bool = True,
        max_hold: float = float("inf"),
    ) -> None:
        settings = RateLimit(
            requests_per_minute=requests_per_minute, burst=burst, adaptive=adaptive
        )
        self.limiter = RateLimiter(settings, key="k", max_hold=max_hold)
        assert isinstance(self.limiter.store, MemoryStore)
        self.store: MemoryStore = self.limiter.store
        self.now = 1000.0

    def reserve(self, max_wait: float | None = None, cost: int = 1) -> float:
        return run(self.store, self.limiter.reserve(self.now, max_wait, cost))  # type: ignore[no-any-return]

    def refund(self, cost: int = 1) -> None:
        run(self.store, self.limiter.refund(self.now, cost))

    def succeeded(self, info: RateLimitInfo | None) -> None:
        run(self.store, self.limiter.succeeded(self.now, info))

    def rate_limited(self, retry_after: float | None, info: RateLimitInfo | None) -> None:
        run(self.store, self.limiter.rate_limited(self.now, retry_after, info))

    def rate(self) -> float:
        """The bucket's rate: what an unchanging `ChangeRate` answers (the configured
        rate for a bucket nothing has touched yet)."""
        configured = self.limiter.settings.requests_per_minute
        return run(self.store, ChangeRate("k", RateChange(), configured))  # type: ignore[no-any-return]


# -- the GCRA store, with explicit times ---------------------------------------------------


def test_burst_goes_at_once_then_one_every_60_over_rpm_seconds() -> None:
    store = MemoryStore()
    assert waits(store, 100.0, 6, burst=3, rate=60) == pytest.approx([0, 0, 0, 1, 2, 3])


@pytest.mark.parametrize(("rpm", "interval"), [(60, 1.0), (120, 0.5), (600, 0.1), (6, 10.0)])
def test_without_burst_each_slot_is_60_over_rpm_after_the_last(rpm: float, interval: float) -> None:
    store = MemoryStore()
    assert waits(store, 0.0, 4, burst=1, rate=rpm) == pytest.approx(
        [0, interval, 2 * interval, 3 * interval]
    )


def test_a_wait_shrinks_as_time_passes() -> None:
    store = MemoryStore()
    store.reserve("k", 100.0, 1, 60)
    assert store.reserve("k", 100.25, 1, 60) == pytest.approx(0.75)
    assert store.reserve("k", 101.0, 1, 60) == pytest.approx(1.0)  # the slot at 102


def test_a_quiet_spell_refills_the_burst_one_slot_per_interval() -> None:
    store = MemoryStore()
    waits(store, 0.0, 3, burst=3, rate=60)  # the burst is spent
    # 1.5 s later one slot (and a half) is back: one goes now, the next waits.
    assert waits(store, 1.5, 2, burst=3, rate=60) == pytest.approx([0, 0.5])
    # After a long pause the whole burst is back, never more than the burst.
    assert waits(store, 100.0, 4, burst=3, rate=60) == pytest.approx([0, 0, 0, 1])


def test_keys_are_independent() -> None:
    store = MemoryStore()
    assert store.reserve("a", 0.0, 1, 60) == 0
    assert store.reserve("b", 0.0, 1, 60) == 0
    assert store.reserve("a", 0.0, 1, 60) == pytest.approx(1.0)


def test_a_wait_over_max_wait_takes_no_slot() -> None:
    store = MemoryStore()
    waits(store, 0.0, 3, burst=1, rate=60)  # the next free slot is at 3
    assert store.reserve("k", 0.0, 1, 60, max_wait=2.0) == pytest.approx(3.0)  # refused
    assert store.reserve("k", 0.0, 1, 60, max_wait=3.0) == pytest.approx(3.0)  # taken
    assert store.reserve("k", 0.0, 1, 60) == pytest.approx(4.0)


def test_hold_until_gives_no_slot_before_it() -> None:
    store = MemoryStore()
    store.hold_until("k", 110.0, 60)
    assert waits(store, 100.0, 3, burst=1, rate=60) == pytest.approx([10, 11, 12])


def test_hold_until_holds_a_burst_too() -> None:
    store = MemoryStore()
    store.hold_until("k", 110.0, 60)
    held = waits(store, 100.0, 3, burst=3, rate=60)
    assert held[0] == pytest.approx(10)  # the first slot is exactly at the hold's end
    assert min(held) >= 10 - APPROX


def test_hold_until_never_moves_the_next_slot_earlier() -> None:
    store = MemoryStore()
    waits(store, 0.0, 5, burst=1, rate=60)  # the next free slot is at 5
    store.hold_until("k", 2.0, 60)
    assert store.reserve("k", 0.0, 1, 60) == pytest.approx(5.0)


def test_hold_until_in_the_past_changes_nothing() -> None:
    store = MemoryStore()
    store.hold_until("k", 50.0, 60)
    assert store.reserve("k", 100.0, 1, 60) == 0


def test_change_rate_returns_the_new_rate_and_spaces_later_slots() -> None:
    store = MemoryStore()
    assert store.rate("k") is None  # nothing known of a key before its first operation
    assert store.change_rate("k", RateChange(), 60) == 60  # a new key starts at default
    assert store.change_rate("k", RateChange(factor=0.5), 60) == 30
    assert store.rate("k") == 30
    assert waits(store, 0.0, 3, burst=1, rate=60) == pytest.approx([0, 2, 4])


def test_the_memory_store_hands_out_each_slot_once_across_threads() -> None:
    store = MemoryStore()
    threads, each = 8, 50
    barrier = threading.Barrier(threads)

    def reserve_many(_: int) -> list[float]:
        barrier.wait(timeout=5)
        return [store.reserve("k", 0.0, 1, 600) for _ in range(each)]

    with ThreadPoolExecutor(threads) as pool:
        got = sorted(itertools.chain.from_iterable(pool.map(reserve_many, range(threads))))
    # Every reservation got its own slot: 0, 0.1, 0.2, ... with none given twice.
    assert got == pytest.approx([n * 0.1 for n in range(threads * each)])


def test_the_memory_store_follows_the_store_protocol() -> None:
    assert isinstance(MemoryStore(), RateLimitStore)


def test_memory_rate_limit_store_is_the_memory_stores_older_name() -> None:
    assert MemoryRateLimitStore is MemoryStore


# -- the shared store documented in docs/protection.md -------------------------------------

DOC = Path(__file__).parent.parent / "docs" / "protection.md"


@pytest.fixture(scope="module")
def sqlite_store_class() -> Any:
    """The python block of docs/protection.md that defines `SQLiteRateLimitStore`, executed."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    (block,) = [b for b in blocks if "class SQLiteRateLimitStore" in b]
    namespace: dict[str, Any] = {"__name__": "protection_doc"}
    exec(compile(block, str(DOC), "exec"), namespace)
    return namespace["SQLiteRateLimitStore"]


def test_the_documented_shared_store_follows_the_protocol(
    sqlite_store_class: Any, tmp_path: Path
) -> None:
    store = sqlite_store_class(str(tmp_path / "rate.sqlite"))
    assert isinstance(store, RateLimitStore)
    RateLimit(requests_per_minute=60, store=store)  # accepted


def test_the_documented_shared_store_keeps_the_memory_stores_arithmetic(
    sqlite_store_class: Any, tmp_path: Path
) -> None:
    path = str(tmp_path / "rate.sqlite")
    memory = MemoryStore()
    for store in (sqlite_store_class(path), memory):
        assert waits(store, 100.0, 5, burst=3, rate=60) == pytest.approx([0, 0, 0, 1, 2])
        store.hold_until("k", 120.0, 60)
        assert store.change_rate("k", RateChange(factor=0.5), 60) == 30
        # Held until 120 whatever the rate: the burst starts at the hold, not before it.
        assert store.reserve("k", 100.0, 3, 60) == pytest.approx(20.0)
    # A second store on the same file (another process, say) sees the same bucket.
    assert sqlite_store_class(path).reserve("k", 100.0, 3, 60) == pytest.approx(
        memory.reserve("k", 100.0, 3, 60)
    )


def random_ops(seed: int, count: int) -> list[StoreOp[Any]]:
    """A seeded mix of every rate-limit operation, on two keys, time moving forward."""
    rng = random.Random(seed)
    now = 1_750_000_000.0
    ops: list[StoreOp[Any]] = []
    for _ in range(count):
        now += rng.choice([0.0, 0.0, 0.1, 0.5, 1.0, 7.0])
        key = rng.choice(["a", "b"])
        kind = rng.choice(["reserve", "reserve", "reserve", "refund", "hold", "change"])
        if kind == "reserve":
            max_wait = rng.choice([None, None, 0.0, 1.0, 5.0])
            ops.append(Reserve(key, now, rng.choice([1, 3]), 60, max_wait, rng.choice([1, 1, 4])))
        elif kind == "refund":
            ops.append(Refund(key, now, 60, rng.choice([1, 2])))
        elif kind == "hold":
            ops.append(Hold(key, now + rng.choice([-1.0, 2.0, 10.0]), 60))
        else:
            change = rng.choice(
                [
                    RateChange(factor=0.5, floor=3.0, ceiling=60.0),
                    RateChange(step=3.0, ceiling=60.0),
                    RateChange(ceiling=20.0),
                    RateChange(),
                ]
            )
            ops.append(ChangeRate(key, change, 60))
    return ops


@pytest.mark.parametrize("seed", range(5))
def test_the_documented_shared_store_answers_every_operation_as_memory_does(
    sqlite_store_class: Any, tmp_path: Path, seed: int
) -> None:
    ops = random_ops(seed, 200)
    assert {type(op) for op in ops} == {Reserve, Refund, Hold, ChangeRate}
    sqlite = sqlite_store_class(str(tmp_path / "rate.sqlite"))
    assert run(sqlite, ops) == pytest.approx(run(MemoryStore(), ops), abs=APPROX)


def test_the_documented_shared_store_takes_cost_and_refunds(
    sqlite_store_class: Any, tmp_path: Path
) -> None:
    path = str(tmp_path / "rate.sqlite")
    for store in (sqlite_store_class(path), MemoryStore()):
        assert store.reserve("k", 0.0, 1, 60, None, 3) == pytest.approx(2.0)  # slots 0, 1, 2
        assert store.reserve("k", 0.0, 1, 60) == pytest.approx(3.0)
        store.refund("k", 0.0, 60, 3)
        assert store.reserve("k", 0.0, 1, 60) == pytest.approx(1.0)
        store.refund("k", 0.0, 60, 100)  # never earlier than now
        assert waits(store, 0.0, 2, burst=1, rate=60) == pytest.approx([0.0, 1.0])
        assert store.change_rate("k", RateChange(factor=0.0, step=5.0, floor=10.0), 60) == 10


def test_the_documented_shared_store_spaces_two_clients(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    sqlite_store_class: Any,
    tmp_path: Path,
) -> None:
    api.side_effect = lambda request: kit.success()
    path = str(tmp_path / "rate.sqlite")
    first = client(
        make_client,
        kit,
        rate_limit=RateLimit(requests_per_minute=60, store=sqlite_store_class(path)),
    )
    second = client(
        make_client,
        kit,
        rate_limit=RateLimit(requests_per_minute=60, store=sqlite_store_class(path)),
    )
    first.generate("x")
    second.generate("y")
    first.generate("z")
    assert fake_time.sleeps == pytest.approx([1.0, 1.0])


# -- RateLimit settings ----------------------------------------------------------------------


def test_rate_limit_defaults() -> None:
    settings = RateLimit(requests_per_minute=10)
    assert (settings.burst, settings.adaptive, settings.store) == (1, True, None)


@pytest.mark.parametrize(
    "keywords",
    [
        {"requests_per_minute": 0},
        {"requests_per_minute": -5},
        {"requests_per_minute": 10, "burst": 0},
        {"requests_per_minute": 10, "rpm": 5},  # a misspelt keyword is refused, not ignored
        {"requests_per_minute": 10, "store": object()},  # not a RateLimitStore
    ],
)
def test_bad_rate_limit_settings_are_refused(keywords: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        RateLimit(**keywords)


class OldStore:
    """A store written against the protocol before operations were data."""

    def reserve(self, key: str, now: float, burst: int, default_rate: float) -> float:
        return 0.0

    def hold_until(self, key: str, until: float, default_rate: float) -> None:
        pass

    def update_rate(self, key: str, change: Any, default_rate: float) -> float:
        return default_rate


def test_a_store_with_the_old_update_rate_is_refused() -> None:
    assert not isinstance(OldStore(), RateLimitStore)
    with pytest.raises(pydantic.ValidationError):
        RateLimit(requests_per_minute=10, store=OldStore())  # type: ignore[arg-type]


def test_rate_limit_settings_are_frozen() -> None:
    settings = RateLimit(requests_per_minute=10)
    with pytest.raises(pydantic.ValidationError):
        settings.burst = 5  # type: ignore[misc]


def test_each_limiter_without_a_store_gets_its_own() -> None:
    settings = RateLimit(requests_per_minute=60)
    first = RateLimiter(settings, key="k")
    second = RateLimiter(settings, key="k")
    assert isinstance(first.store, MemoryStore)
    assert first.store is not second.store


def test_a_limiter_given_a_store_uses_it() -> None:
    store = MemoryStore()
    limiter = RateLimiter(RateLimit(requests_per_minute=60, store=store), key="k")
    assert limiter.store is store


# -- the limiter's operations: plain data, nothing run -----------------------------------------


def test_the_limiter_returns_its_decisions_as_operations() -> None:
    limiter = RateLimiter(RateLimit(requests_per_minute=60, burst=2), key="k")
    assert limiter.reserve(5.0) == Reserve("k", 5.0, 2, 60, None, 1)
    assert limiter.reserve(5.0, max_wait=2.0, cost=3) == Reserve("k", 5.0, 2, 60, 2.0, 3)
    assert limiter.refund(5.0) == Refund("k", 5.0, 60, 1)
    assert limiter.refund(5.0, cost=3) == Refund("k", 5.0, 60, 3)
    assert limiter.succeeded(5.0, None) == [ChangeRate("k", RateChange(step=3.0, ceiling=60), 60)]
    assert limiter.rate_limited(5.0, 7.0, None) == [
        Hold("k", 12.0, 60),
        ChangeRate("k", RateChange(factor=0.5, floor=3.0, ceiling=60), 60),
    ]
    # Building them touched no store.
    assert isinstance(limiter.store, MemoryStore)
    assert limiter.store.rate("k") is None


def test_the_limiters_operations_hold_no_closure() -> None:
    # A store on another server (a Lua script in Redis) must be able to carry them out.
    limiter = RateLimiter(RateLimit(requests_per_minute=60), key="k")
    info = RateLimitInfo(limit_requests=30, remaining_requests=0, reset_requests=7.0)
    ops = [
        limiter.reserve(0.0, max_wait=1.0, cost=2),
        limiter.refund(0.0),
        *limiter.succeeded(0.0, info),
        *limiter.rate_limited(0.0, 4.0, info),
    ]
    for op in ops:
        hash(op)  # frozen
        values = [getattr(op, field.name) for field in dataclasses.fields(op)]
        assert not any(callable(value) for value in values), op


def test_headers_become_operations_in_order() -> None:
    limiter = RateLimiter(RateLimit(requests_per_minute=60), key="k")
    info = RateLimitInfo(limit_requests=30, remaining_requests=0, reset_requests=7.0)
    # The server's lower limit first (and as the default from then on), then its reset,
    # then the success's step, capped by the new ceiling.
    assert limiter.succeeded(100.0, info) == [
        ChangeRate("k", RateChange(ceiling=30), 30),
        Hold("k", 107.0, 30),
        ChangeRate("k", RateChange(step=3.0, ceiling=30), 30),
    ]
    assert limiter.reserve(100.0).default_rate == 30


def test_a_limiter_that_is_not_adaptive_asks_for_no_rate_change() -> None:
    limiter = RateLimiter(RateLimit(requests_per_minute=60, adaptive=False), key="k")
    assert limiter.succeeded(0.0, None) == []
    assert limiter.rate_limited(0.0, None, None) == []
    assert limiter.rate_limited(0.0, 5.0, None) == [Hold("k", 5.0, 60)]


def test_a_hold_longer_than_max_hold_is_not_asked_for() -> None:
    limited = Limited(60, max_hold=10.0)
    assert limited.limiter.rate_limited(0.0, 10.5, None) == [
        ChangeRate("k", RateChange(factor=0.5, floor=3.0, ceiling=60), 60)
    ]
    spent = RateLimitInfo(remaining_requests=0, reset_requests=11.0)
    assert not any(isinstance(op, Hold) for op in limited.limiter.succeeded(0.0, spent))
    limited.rate_limited(10.0, None)  # at the limit: held
    assert limited.reserve() == pytest.approx(10.0)


# -- AIMD: the limiter adapts ------------------------------------------------------------------


def test_the_limiter_starts_at_the_configured_rate() -> None:
    limited = Limited(90)
    assert limited.limiter.reserve(limited.now).default_rate == 90
    assert [limited.reserve() for _ in range(3)] == pytest.approx([0, 2 / 3, 4 / 3])
    assert limited.store.rate("k") == 90
    assert limited.rate() == 90


def test_each_429_halves_the_rate_down_to_a_floor() -> None:
    limited = Limited(60)
    rates = []
    for _ in range(6):
        limited.rate_limited(None, None)
        rates.append(limited.rate())
    # Halved each time, but never below 5% of the configured rate (3 rpm here).
    assert rates == pytest.approx([30, 15, 7.5, 3.75, 3, 3])


def test_a_lower_rate_spaces_the_slots_further() -> None:
    limited = Limited(60)
    limited.rate_limited(None, None)  # 30 rpm: one slot every 2 s
    assert [limited.reserve() for _ in range(3)] == pytest.approx([0, 2, 4])


def test_successes_add_back_a_twentieth_of_the_rate_up_to_the_ceiling() -> None:
    limited = Limited(60)
    limited.rate_limited(None, None)  # 30
    rates = []
    for _ in range(12):
        limited.succeeded(None)
        rates.append(limited.rate())
    # +3 rpm per success (5% of 60), back to 60 after ten and never above it.
    assert rates == pytest.approx([33, 36, 39, 42, 45, 48, 51, 54, 57, 60, 60, 60])


def test_successes_never_raise_the_rate_above_the_configured_one() -> None:
    limited = Limited(60)
    for _ in range(5):
        limited.succeeded(None)
    assert limited.rate() == 60


def test_not_adaptive_keeps_the_configured_rate() -> None:
    limited = Limited(60, adaptive=False)
    limited.rate_limited(None, None)
    assert limited.rate() == 60
    limited.succeeded(None)
    assert limited.rate() == 60


def test_a_429_hint_holds_every_slot_until_it_has_passed() -> None:
    limited = Limited(60)
    limited.rate_limited(7.0, None)
    limited.now += 3.0
    assert limited.reserve() == pytest.approx(4.0)


def test_a_429_hint_holds_a_burst_until_it_has_passed() -> None:
    limited = Limited(60, burst=5)
    limited.rate_limited(5.0, None)
    assert limited.reserve() >= 5.0 - APPROX


def test_a_429_hint_holds_even_when_not_adaptive() -> None:
    limited = Limited(60, adaptive=False)
    limited.rate_limited(7.0, None)
    assert limited.reserve() == pytest.approx(7.0)
    assert limited.rate() == 60


def test_a_refunded_slot_goes_to_the_next_caller() -> None:
    limited = Limited(60)
    assert limited.reserve() == 0
    assert limited.reserve() == pytest.approx(1.0)
    limited.refund()  # that caller gave up while waiting
    assert limited.reserve() == pytest.approx(1.0)  # its slot, not the one after


# -- the provider's rate-limit headers ---------------------------------------------------------


def test_a_lower_limit_requests_header_lowers_the_ceiling() -> None:
    limited = Limited(120)
    limited.succeeded(RateLimitInfo(limit_requests=30, remaining_requests=29))
    assert limited.rate() == 30
    limited.rate_limited(None, None)
    for _ in range(100):
        limited.succeeded(None)
    assert limited.rate() == 30  # successes climb back to the server's limit, not ours


def test_a_higher_limit_requests_header_never_raises_the_ceiling() -> None:
    limited = Limited(60)
    limited.succeeded(RateLimitInfo(limit_requests=10_000))
    assert limited.rate() == 60
    limited.rate_limited(None, None)
    for _ in range(100):
        limited.succeeded(RateLimitInfo(limit_requests=10_000))
    assert limited.rate() == 60


def test_a_zero_limit_requests_header_is_ignored() -> None:
    limited = Limited(60)
    limited.succeeded(RateLimitInfo(limit_requests=0))
    assert limited.rate() == 60


def test_no_requests_remaining_holds_until_the_reset() -> None:
    limited = Limited(60)
    limited.succeeded(RateLimitInfo(remaining_requests=0, reset_requests=7.0))
    assert limited.reserve() == pytest.approx(7.0)


def test_requests_remaining_do_not_hold() -> None:
    limited = Limited(60)
    limited.succeeded(RateLimitInfo(remaining_requests=3, reset_requests=7.0))
    assert limited.reserve() == 0


def test_no_requests_remaining_without_a_reset_does_not_hold() -> None:
    limited = Limited(60)
    limited.succeeded(RateLimitInfo(remaining_requests=0))
    assert limited.reserve() == 0


def test_headers_on_a_429_are_heeded_too() -> None:
    limited = Limited(120)
    limited.rate_limited(
        None, RateLimitInfo(limit_requests=40, remaining_requests=0, reset_requests=3.0)
    )
    assert limited.rate() == 20  # the server's 40, halved
    assert limited.reserve() == pytest.approx(3.0)


def test_a_429_never_raises_the_rate_above_the_servers_limit() -> None:
    limited = Limited(120)
    limited.succeeded(RateLimitInfo(limit_requests=5))  # OpenAI tier 1: 5 images a minute
    assert limited.rate() == 5
    limited.rate_limited(None, None)
    assert limited.rate() <= 5


# -- through the clients, with fake time -------------------------------------------------------


def test_without_a_rate_limit_nothing_waits(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    made = client(make_client, kit)
    for _ in range(5):
        made.generate("x")
    assert made.target._engine.limiter is None
    assert fake_time.sleeps == []
    assert api.call_count == 5


def test_calls_wait_their_turn_before_sending(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60, burst=1))
    sent_at = []
    for _ in range(3):
        made.generate("x")
        sent_at.append(fake_time.now)
    # Waits of 0, 1 and 1 s: the first call goes at once (no sleep at all).
    assert fake_time.sleeps == pytest.approx([1.0, 1.0])
    assert api.call_count == 3
    assert [later - earlier for earlier, later in itertools.pairwise(sent_at)] == pytest.approx(
        [1.0, 1.0]
    )


def test_a_burst_goes_at_once_then_calls_are_spaced(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=120, burst=3))
    for _ in range(5):
        made.generate("x")
    assert fake_time.sleeps == pytest.approx([0.5, 0.5])
    assert api.call_count == 5


def test_a_429_lowers_the_rate_and_successes_raise_it_back(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited()] + [kit.success()] * 12
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60), max_retries=0)
    with pytest.raises(aigen.RateLimitError) as caught:
        made.generate("x")
    assert type(caught.value) is aigen.RateLimitError
    assert rate_of(made) == 30
    made.generate("x")  # the slot reserved at 60 rpm: 1 s
    made.generate("x")  # now at 30 rpm (33 after the success): 2 s
    assert fake_time.sleeps == pytest.approx([1.0, 2.0])
    for _ in range(10):
        made.generate("x")
    assert rate_of(made) == 60
    assert fake_time.sleeps[-1] == pytest.approx(1.0)  # back to one call a second


def test_a_429_hint_makes_the_next_call_wait_at_least_the_hint(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(5.0), kit.success()]
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60), max_retries=0)
    with pytest.raises(aigen.RateLimitError) as caught:
        made.generate("x")
    assert caught.value.retry_after == pytest.approx(5.0)
    made.generate("x")
    assert len(fake_time.sleeps) == 1
    assert fake_time.sleeps[0] >= 5.0 - APPROX


def test_a_429_hint_makes_the_retry_wait_at_least_the_hint(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(5.0), kit.success()]
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60), max_retries=1)
    started = fake_time.now
    result = made.generate("x")
    assert result.attempts == 2
    assert api.call_count == 2
    # The retry's own wait is the hint; the limiter adds nothing on top of it.
    assert fake_time.now - started == pytest.approx(5.0)


def test_a_429_hint_holds_other_calls_as_well(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(20.0)] + [kit.success()] * 3
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=600), max_retries=0)
    started = fake_time.now
    with pytest.raises(aigen.RateLimitError):
        made.generate("x")
    made.generate("x")
    assert fake_time.now - started >= 20.0 - APPROX


def test_a_429_hint_holds_other_calls_with_a_burst(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(5.0)] + [kit.success()] * 3
    made = client(
        make_client, kit, rate_limit=RateLimit(requests_per_minute=60, burst=5), max_retries=0
    )
    started = fake_time.now
    with pytest.raises(aigen.RateLimitError):
        made.generate("x")
    made.generate("x")
    assert fake_time.now - started >= 5.0 - APPROX  # sent after 1 s


def test_a_hint_too_long_to_wait_for_does_not_hold_later_calls_for_it(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(3600.0), kit.success()]
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60))
    with pytest.raises(aigen.RateLimitError) as caught:
        made.generate("x")  # raised at once: 3600 s is past max_retry_after
    assert caught.value.retry_after == pytest.approx(3600.0)
    assert fake_time.sleeps == []
    # Refusing the next call at once would do; sleeping for an hour would not.
    with contextlib.suppress(aigen.GenerationError):
        made.generate("y")
    assert max(fake_time.sleeps, default=0.0) <= RetryPolicy().max_retry_after


def test_a_quota_429_does_not_lower_the_rate(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.quota_exhausted(), kit.success()]
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60), max_retries=0)
    with pytest.raises(aigen.QuotaExceededError):
        made.generate("x")
    assert rate_of(made) == 60
    made.generate("x")
    assert fake_time.sleeps == pytest.approx([1.0])  # the usual spacing; no 30 s hold


def test_a_server_error_does_not_change_the_rate(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.server_error(503), kit.success()]
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60), max_retries=0)
    with pytest.raises(aigen.ServerError):
        made.generate("x")
    assert rate_of(made) == 60


def test_every_attempt_takes_a_slot(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.server_error(503), kit.success()]
    made = client(
        make_client,
        kit,
        rate_limit=RateLimit(requests_per_minute=6),  # one slot every 10 s
        retry=RetryPolicy(max_retries=1, initial_delay=1.0),
    )
    made.target._engine.jitter = lambda: 0.0
    started = fake_time.now
    assert made.generate("x").attempts == 2
    # Backoff waited 1 s, then the retry waited for its own slot, 10 s after the first.
    assert fake_time.sleeps == pytest.approx([1.0, 9.0])
    assert fake_time.now - started == pytest.approx(10.0)


class RecordingStore:
    """A store of one's own (no base class): delegates to memory, records every call."""

    def __init__(self, fixed_wait: float | None = None) -> None:
        self.inner = MemoryStore()
        self.fixed_wait = fixed_wait
        self.calls: list[tuple[str, str, Any, Any, Any]] = []

    def reserve(
        self,
        key: str,
        now: float,
        burst: int,
        default_rate: float,
        max_wait: float | None = None,
        cost: int = 1,
    ) -> float:
        self.calls.append(("reserve", key, now, burst, default_rate))
        wait = self.inner.reserve(key, now, burst, default_rate, max_wait, cost)
        return wait if self.fixed_wait is None else self.fixed_wait

    def refund(self, key: str, now: float, default_rate: float, cost: int = 1) -> None:
        self.calls.append(("refund", key, now, cost, default_rate))
        self.inner.refund(key, now, default_rate, cost)

    def hold_until(self, key: str, until: float, default_rate: float) -> None:
        self.calls.append(("hold_until", key, until, None, default_rate))
        self.inner.hold_until(key, until, default_rate)

    def change_rate(self, key: str, change: RateChange, default_rate: float) -> float:
        rate = self.inner.change_rate(key, change, default_rate)
        self.calls.append(("change_rate", key, change, None, rate))
        return rate


def test_a_store_of_ones_own_is_used(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.success(), kit.rate_limited(4.0), kit.success()]
    store = RecordingStore()
    assert isinstance(store, RateLimitStore)
    made = client(
        make_client,
        kit,
        rate_limit=RateLimit(requests_per_minute=60, burst=2, store=store),
        max_retries=1,
    )
    made.generate("x")
    made.generate("y")
    kinds = [call[0] for call in store.calls]
    # One reservation per attempt (three attempts), the rate adapted, the hint held.
    assert kinds.count("reserve") == 3
    assert "hold_until" in kinds
    assert "change_rate" in kinds
    assert "refund" not in kinds  # every slot taken was used
    # Each rate change reached the store as data, not as a function to call.
    changes = [call[2] for call in store.calls if call[0] == "change_rate"]
    assert changes
    assert all(type(change) is RateChange for change in changes)
    keys = {call[1] for call in store.calls}
    assert len(keys) == 1
    (key,) = keys
    assert kit.name in key
    assert made.target._engine.settings.base_url in key
    reserve = next(call for call in store.calls if call[0] == "reserve")
    assert reserve[2:] == (pytest.approx(1_750_000_000.0), 2, 60)  # wall time, burst, rate
    hold = next(call for call in store.calls if call[0] == "hold_until")
    assert hold[2] == pytest.approx(fake_time.now)  # until = when the 429 came + 4 s


class Interrupted(BaseException):
    """Stands for a Ctrl-C or a cancellation arriving while a call sleeps."""


class InterruptingClock(FakeTime):
    """Fake time whose first `sleep` is interrupted before any time passes."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def sleep(self, seconds: float) -> None:
        if not self.interrupted:
            self.interrupted = True
            raise Interrupted
        super().sleep(seconds)


def test_a_call_interrupted_while_waiting_its_turn_gives_its_slot_back(
    make_client: Any, kit: Any, api: Any
) -> None:
    api.side_effect = lambda request: kit.success()
    store = RecordingStore()
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60, store=store))
    clock = InterruptingClock()
    use_clock(made.target, clock)
    made.generate("x")  # the slot at 0
    with pytest.raises(Interrupted):
        made.generate("y")  # reserved the slot at 1 s, interrupted while waiting for it
    assert api.call_count == 1
    assert [call[0] for call in store.calls][-1] == "refund"
    made.generate("z")
    assert clock.sleeps == pytest.approx([1.0])  # the slot the interrupted call gave back
    assert api.call_count == 2


def test_the_wait_a_store_returns_is_the_wait_slept(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    store = RecordingStore(fixed_wait=2.5)
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=6000, store=store))
    made.generate("x")
    made.generate("y")
    assert fake_time.sleeps == pytest.approx([2.5, 2.5])
    assert api.call_count == 2


def test_clients_sharing_a_store_share_the_budget(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    shared = RateLimit(requests_per_minute=60, store=MemoryStore())
    first = client(make_client, kit, rate_limit=shared)
    second = client(make_client, kit, rate_limit=shared)
    first.generate("x")
    second.generate("y")  # the slot after the first client's
    first.generate("z")
    assert fake_time.sleeps == pytest.approx([1.0, 1.0])


def test_clients_with_their_own_limits_do_not_share(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    settings = RateLimit(requests_per_minute=60)  # no store: each client gets its own
    first = client(make_client, kit, rate_limit=settings)
    second = client(make_client, kit, rate_limit=settings)
    first.generate("x")
    second.generate("y")
    assert fake_time.sleeps == []


def test_a_wait_past_the_deadline_raises_timeout_without_sending(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    made = client(
        make_client,
        kit,
        rate_limit=RateLimit(requests_per_minute=6),  # one slot every 10 s
        retry=RetryPolicy(deadline=5.0, max_retries=0),
    )
    made.generate("x")
    with pytest.raises(aigen.APITimeoutError) as caught:
        made.generate("y")
    assert api.call_count == 1
    assert caught.value.attempts == 0
    assert caught.value.generation_id
    assert "rate limit" in str(caught.value)
    assert "deadline" in str(caught.value)
    assert fake_time.sleeps == []


def test_a_wait_within_the_deadline_is_waited(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    made = client(
        make_client,
        kit,
        rate_limit=RateLimit(requests_per_minute=6),
        retry=RetryPolicy(deadline=15.0),
    )
    made.generate("x")
    made.generate("y")
    assert fake_time.sleeps == pytest.approx([10.0])
    assert api.call_count == 2


def test_a_call_the_rate_limit_cannot_admit_in_time_gives_up_at_once(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    made = client(
        make_client,
        kit,
        rate_limit=RateLimit(requests_per_minute=6),
        retry=RetryPolicy(deadline=5.0),  # the default two retries
    )
    made.generate("x")
    with pytest.raises(aigen.APITimeoutError):
        made.generate("y")
    assert api.call_count == 1
    assert fake_time.sleeps == []  # waiting cannot bring the slot inside the deadline


def test_a_call_refused_for_its_deadline_leaves_its_slot_to_others(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = lambda request: kit.success()
    store = MemoryStore()
    hurried = client(
        make_client,
        kit,
        rate_limit=RateLimit(requests_per_minute=6, store=store),
        retry=RetryPolicy(deadline=5.0, max_retries=0),
    )
    patient = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=6, store=store))
    hurried.generate("x")  # takes the slot at 0; the next is at 10 s
    for _ in range(3):
        with pytest.raises(aigen.APITimeoutError):
            hurried.generate("y")  # refused: nothing sent
    patient.generate("z")
    assert api.call_count == 2
    assert fake_time.sleeps == pytest.approx([10.0])  # not 40 s


# -- the provider's rate-limit headers, through the clients (OpenAI) -----------------------


@openai_only
def test_openai_limit_requests_header_lowers_the_clients_rate(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    headers = {"x-ratelimit-limit-requests": "30", "x-ratelimit-remaining-requests": "29"}
    api.side_effect = lambda request: with_headers(kit.success(), headers)
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=120))
    for _ in range(3):
        made.generate("x")
    # The second call had its 0.5 s slot at 120 rpm; then the server's 30 rpm: 2 s.
    assert fake_time.sleeps == pytest.approx([0.5, 2.0])
    assert rate_of(made) == 30


@openai_only
def test_openai_no_requests_remaining_holds_until_the_reset(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    spent = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "7s"}
    api.side_effect = [with_headers(kit.success(), spent), kit.success()]
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=600))
    made.generate("x")
    made.generate("y")
    assert fake_time.sleeps == pytest.approx([7.0])


@openai_only
def test_openai_headers_on_a_429_inform_the_limiter(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    headers = {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "3s",
    }
    api.side_effect = [kit.rate_limited(headers=headers), kit.success()]
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60), max_retries=0)
    with pytest.raises(aigen.RateLimitError):
        made.generate("x")
    assert rate_of(made) == 10  # the server's 20, halved by the 429
    made.generate("y")
    assert fake_time.sleeps == pytest.approx([3.0])  # held until the reset


@openai_only
def test_openai_headers_at_or_above_the_rate_change_nothing(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    headers = {"x-ratelimit-limit-requests": "5000", "x-ratelimit-remaining-requests": "4999"}
    api.side_effect = lambda request: with_headers(kit.success(), headers)
    made = client(make_client, kit, rate_limit=RateLimit(requests_per_minute=60))
    for _ in range(3):
        made.generate("x")
    assert fake_time.sleeps == pytest.approx([1.0, 1.0])


def test_the_fake_openai_servers_headers_inform_the_limiter(
    make_client: Any, fake_time: FakeTime
) -> None:
    # The fake's sample headers say 60 requests a minute; the client asked for 120.
    with FakeOpenAI(rate_limit_headers=OPENAI_RATE_LIMIT_HEADERS) as fake:
        made = make_client(
            provider="openai",
            base_url=fake.base_url,
            rate_limit=RateLimit(requests_per_minute=120),
            timeout=3.0,
        )
        for _ in range(3):
            made.generate("x")
        assert len(fake.requests) == 3
    assert fake_time.sleeps == pytest.approx([0.5, 1.0])


# -- shared by threads and tasks, in real time -----------------------------------------------

# One run per client, each against a different provider's fake: both clients and both
# providers are covered at the cost of two real-time runs.
REAL_TIME_RUNS = pytest.mark.parametrize(
    ("client_kind", "provider"), [("sync", "gemini"), ("async", "openai")]
)
CALLS = 10
RPM = 600  # one request every 0.1 s
# Arrival gaps are measured by the server after the whole request was read, so one may
# come a little early after a late one; the span over all of them cannot.
GAP_SLACK = 0.03


@pytest.fixture
def real_server(provider: str) -> Iterator[FakeServer]:
    with fake_server(provider) as fake:
        yield fake


@REAL_TIME_RUNS
def test_one_limiter_spaces_every_thread_or_task_of_a_client(
    make_client: Any, real_server: FakeServer, client_kind: str
) -> None:
    made = make_client(
        real_time=True,
        provider=real_server.provider,
        base_url=real_server.base_url,
        rate_limit=RateLimit(requests_per_minute=RPM, burst=1),
        timeout=3.0,
        max_retries=0,
    )

    def one(client: Any) -> Any:
        return client.generate("x")

    started = time.monotonic()
    results = run_concurrently(made, [one] * CALLS)
    elapsed = time.monotonic() - started

    assert all(isinstance(result, aigen.GenerationResponse) for result in results), results
    arrivals = sorted(real_server.arrivals)
    assert len(arrivals) == CALLS
    interval = 60 / RPM
    assert elapsed >= (CALLS - 1) * interval - GAP_SLACK
    assert elapsed < 3.0
    assert arrivals[-1] - arrivals[0] >= (CALLS - 1) * interval - GAP_SLACK
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) >= interval - GAP_SLACK, gaps


@REAL_TIME_RUNS
def test_a_burst_of_threads_or_tasks_goes_at_once(
    make_client: Any, real_server: FakeServer, client_kind: str
) -> None:
    made = make_client(
        real_time=True,
        provider=real_server.provider,
        base_url=real_server.base_url,
        rate_limit=RateLimit(requests_per_minute=60, burst=4),
        timeout=3.0,
    )

    def one(client: Any) -> Any:
        return client.generate("x")

    started = time.monotonic()
    results = run_concurrently(made, [one] * 4)
    assert all(isinstance(result, aigen.GenerationResponse) for result in results), results
    assert time.monotonic() - started < 0.9  # no one waited its 1 s slot


@pytest.mark.parametrize(("client_kind", "provider"), [("async", "gemini")])
def test_tasks_waiting_their_turn_do_not_block_the_event_loop(
    make_client: Any, real_server: FakeServer, client_kind: str
) -> None:
    made = make_client(
        real_time=True,
        provider=real_server.provider,
        base_url=real_server.base_url,
        rate_limit=RateLimit(requests_per_minute=600),
        timeout=3.0,
    )
    client = made.target

    async def scenario() -> float:
        import asyncio

        ticks = [time.monotonic()]
        calls = asyncio.gather(*(client.generate("x") for _ in range(5)))
        while not calls.done():
            await asyncio.sleep(0.01)
            ticks.append(time.monotonic())
        await calls
        return max(later - earlier for earlier, later in itertools.pairwise(ticks))

    # Five calls spaced 0.1 s apart take 0.4 s; had their waits blocked the loop, a ticker
    # on the same loop would have stood still for 0.1 s at least.
    real_server.default = success(png(8, 8))
    assert run_on_loop(made, scenario()) < 0.075
    assert len(real_server.requests) == 5
