"""The store operations (aigen/_store.py): plain data that a store carries out atomically.

- `RateChange`, the rate change as four numbers;
- `Reserve(cost=n)` and `Refund`, on `MemoryStore`, with explicit times;
- `Record(outcome="nothing")`, which counts nothing but frees a probe;
- `op.run(store)` and `op.arun(store)`: the async driver awaits a store's `a`-prefixed
  coroutine twin when it has one, and calls the plain method otherwise; through both
  clients too (`make_client`).

The rate limiter's and the circuit breaker's behaviour on top of these is in
tests/test_rate_limit.py and tests/test_circuit_breaker.py (with the SQLite store of
docs/protection.md checked against `MemoryStore`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

import aigen
from aigen import CircuitBreaker, CircuitStore, MemoryStore, RateLimit, RateLimitStore
from aigen._store import (
    Admit,
    CallOutcome,
    ChangeRate,
    CircuitVerdict,
    Hold,
    RateChange,
    Record,
    Refund,
    Reserve,
    StoreOp,
)

from .conftest import FakeTime

APPROX = 1e-6

StoreFactory = Callable[[], Any]
"""Makes a fresh store: `MemoryStore`, or `RedisStore` through either of its clients."""


@pytest.fixture(params=["memory", "redis-sync", "redis-async"])
def new_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """The operations below run the same on every store (one suite, every store)."""
    if request.param == "memory":
        yield MemoryStore
        return
    from .redis_stores import redis_store_factory

    url = request.getfixturevalue("redis_url")
    with redis_store_factory(url, asynchronous=request.param == "redis-async") as factory:
        yield factory


INF = float("inf")


def run(store: object, ops: Iterable[StoreOp[Any]]) -> list[Any]:
    """Carry out `ops` on `store` in order, as a client's sync driver does; their answers."""
    return [op.run(store) for op in ops]


def reserve(store: object, now: float, *, burst: int = 1, cost: int = 1, **kwargs: Any) -> float:
    """One reservation on key "k" at 60 requests a minute (one slot a second)."""
    return Reserve("k", now, burst, 60, cost=cost, **kwargs).run(store)


# -- RateChange -----------------------------------------------------------------------------


def test_the_default_rate_change_changes_nothing() -> None:
    for rate in (0.5, 3.0, 60.0, 10_000.0):
        assert RateChange().apply(rate) == rate


@pytest.mark.parametrize(
    ("change", "rate", "expected"),
    [
        (RateChange(factor=0.5), 60, 30),
        (RateChange(factor=2.0), 60, 120),
        (RateChange(step=3.0), 30, 33),
        (RateChange(step=-10.0), 30, 20),
        (RateChange(factor=0.5, step=1.0), 60, 31),  # the factor first, then the step
        (RateChange(factor=0.5, floor=40.0), 60, 40),  # raised to the floor
        (RateChange(step=3.0, ceiling=60.0), 59, 60),  # capped at the ceiling
        (RateChange(step=3.0, ceiling=60.0), 50, 53),
        (RateChange(ceiling=30.0), 60, 30),  # a ceiling alone only ever lowers
        (RateChange(ceiling=30.0), 20, 20),
        (RateChange(factor=0.0, step=5.0, floor=10.0), 60, 10),
        (RateChange(floor=50.0, ceiling=40.0), 60, 40),  # the ceiling has the last word
        (RateChange(factor=0.5, floor=3.0, ceiling=60.0), 5, 3),  # a 429 at the floor
    ],
)
def test_a_rate_change_is_factor_then_step_then_floor_then_ceiling(
    change: RateChange, rate: float, expected: float
) -> None:
    assert change.apply(rate) == pytest.approx(expected)
    assert change.apply(rate) == min(
        change.ceiling, max(change.floor, rate * change.factor + change.step)
    )


def test_a_rate_change_is_plain_frozen_data() -> None:
    change = RateChange(factor=0.5, step=1.0, floor=2.0, ceiling=3.0)
    assert (change.factor, change.step, change.floor, change.ceiling) == (0.5, 1.0, 2.0, 3.0)
    assert RateChange() == RateChange(1.0, 0.0, 0.0, INF)
    assert change == RateChange(0.5, 1.0, 2.0, 3.0)
    assert len({change, RateChange(0.5, 1.0, 2.0, 3.0)}) == 1
    with pytest.raises(AttributeError):
        change.factor = 2.0  # type: ignore[misc]


def test_change_rate_applies_the_change_to_the_stored_rate(new_store: StoreFactory) -> None:
    store = new_store()
    ops = [
        ChangeRate("k", RateChange(factor=0.5, floor=3.0, ceiling=60.0), 60),  # a new key: 60
        ChangeRate("k", RateChange(factor=0.5, floor=3.0, ceiling=60.0), 60),
        ChangeRate("k", RateChange(step=3.0, ceiling=60.0), 60),
        ChangeRate("k", RateChange(ceiling=10.0), 60),
    ]
    assert run(store, ops) == pytest.approx([30, 15, 18, 10])
    assert store.rate("k") == 10
    assert reserve(store, 0.0) == 0
    assert reserve(store, 0.0) == pytest.approx(6.0)  # 10 a minute


# -- Reserve(cost=n) ------------------------------------------------------------------------


@pytest.mark.parametrize("cost", [1, 2, 3, 5])
def test_a_reservation_of_cost_n_waits_for_the_last_of_n_slots(
    cost: int, new_store: StoreFactory
) -> None:
    store = new_store()
    # Slots 0, 1, ..., n-1 at one a second: the call goes when the last one comes.
    assert reserve(store, 0.0, cost=cost) == pytest.approx(cost - 1)
    # And the next call's slot comes after all n of them.
    assert reserve(store, 0.0) == pytest.approx(cost)


@pytest.mark.parametrize("cost", [1, 2, 3, 5])
def test_a_later_call_waits_n_intervals_more_after_a_cost_of_n(
    cost: int, new_store: StoreFactory
) -> None:
    single, costly = new_store(), new_store()
    for store, first_cost in ((single, 0), (costly, cost)):
        reserve(store, 0.0)
        if first_cost:
            reserve(store, 0.0, cost=first_cost)
    assert reserve(costly, 0.0) - reserve(single, 0.0) == pytest.approx(cost)


def test_a_cost_of_n_is_the_same_as_n_reservations_for_later_calls(new_store: StoreFactory) -> None:
    one_go, one_by_one = new_store(), new_store()
    reserve(one_go, 0.0, cost=4)
    for _ in range(4):
        reserve(one_by_one, 0.0)
    later = [reserve(store, 0.5) for store in (one_go, one_by_one)]
    assert later[0] == pytest.approx(later[1]) == pytest.approx(3.5)


def test_a_cost_within_the_burst_goes_at_once(new_store: StoreFactory) -> None:
    store = new_store()
    assert reserve(store, 0.0, burst=3, cost=3) == 0  # the whole burst
    assert reserve(store, 0.0, burst=3) == pytest.approx(1.0)
    fresh = new_store()
    assert reserve(fresh, 0.0, burst=3, cost=4) == pytest.approx(1.0)  # one past the burst


def test_a_costly_reservation_over_max_wait_takes_nothing(new_store: StoreFactory) -> None:
    store = new_store()
    assert reserve(store, 0.0, cost=5, max_wait=3.0) == pytest.approx(4.0)  # refused
    assert reserve(store, 0.0) == 0  # every slot is still free
    assert reserve(store, 0.0, cost=3, max_wait=3.0) == pytest.approx(3.0)  # slots 1, 2, 3
    assert reserve(store, 0.0) == pytest.approx(4.0)


def test_a_costly_reservation_waits_for_a_hold_too(new_store: StoreFactory) -> None:
    store = new_store()
    Hold("k", 10.0, 60).run(store)
    assert reserve(store, 0.0, cost=3) == pytest.approx(12.0)  # slots 10, 11, 12
    assert reserve(store, 0.0) == pytest.approx(13.0)


# -- Refund ---------------------------------------------------------------------------------


def test_refunds_give_the_slots_of_calls_that_gave_up_to_the_next_caller(
    new_store: StoreFactory,
) -> None:
    store = new_store()
    assert reserve(store, 0.0) == 0  # this one is sent
    waiting = [reserve(store, 0.0) for _ in range(20)]
    assert waiting == pytest.approx([float(n) for n in range(1, 21)])
    run(store, [Refund("k", 0.0, 60)] * 20)  # all twenty gave up
    # The next call gets the slot after the one in use: ~1 s, not ~21 s.
    assert reserve(store, 0.0) == pytest.approx(1.0)
    assert reserve(store, 0.0) == pytest.approx(2.0)


def test_a_refund_of_cost_n_undoes_a_reservation_of_cost_n(new_store: StoreFactory) -> None:
    store = new_store()
    reserve(store, 0.0)
    reserve(store, 0.0, cost=4)
    Refund("k", 0.0, 60, cost=4).run(store)
    assert reserve(store, 0.0) == pytest.approx(1.0)


def test_a_refund_never_frees_a_slot_earlier_than_now(new_store: StoreFactory) -> None:
    store = new_store()
    waits = [reserve(store, 0.0) for _ in range(20)]  # the next free slot is at 20
    assert waits[-1] == pytest.approx(19.0)
    run(store, [Refund("k", 10.0, 60)] * 20)  # at 10 s, the twenty give their slots back
    # Only slots from 10 s on come back: a process whose clock says 9 s waits for 10 s.
    assert reserve(store, 9.0) == pytest.approx(1.0)
    # And the refunds banked nothing: from now on, one slot a second again.
    assert [reserve(store, 10.0) for _ in range(3)] == pytest.approx([1.0, 2.0, 3.0])


def test_more_refunds_than_reservations_never_make_a_burst(new_store: StoreFactory) -> None:
    store = new_store()
    reserve(store, 0.0)
    run(store, [Refund("k", 0.0, 60)] * 50)
    assert [reserve(store, 0.0) for _ in range(3)] == pytest.approx([0.0, 1.0, 2.0])


def test_a_refund_on_a_new_key_changes_nothing(new_store: StoreFactory) -> None:
    store = new_store()
    Refund("k", 100.0, 60).run(store)
    assert store.rate("k") == 60
    assert [reserve(store, 100.0) for _ in range(2)] == pytest.approx([0.0, 1.0])


# -- Record(outcome="nothing") ----------------------------------------------------------------


def record(store: object, outcome: CallOutcome, *, probe: bool = False, now: float = 0.0) -> None:
    Record("c", now, outcome, probe, 3).run(store)


def admit(store: object, now: float) -> CircuitVerdict:
    return Admit("c", now, 30.0).run(store)


def test_nothing_changes_no_count(new_store: StoreFactory) -> None:
    store = new_store()
    record(store, "failure")
    record(store, "failure")
    for _ in range(10):
        record(store, "nothing")
    assert store.circuit_state("c") == "closed"  # "nothing" is no failure...
    record(store, "failure")
    assert store.circuit_state("c") == "open"  # ...and no success: the two still counted
    assert admit(store, 0.0).failures == 3


def test_nothing_leaves_an_open_circuit_as_it_was(new_store: StoreFactory) -> None:
    store = new_store()
    for _ in range(3):
        record(store, "failure", now=0.0)
    record(store, "nothing", now=20.0)
    record(store, "nothing", probe=True, now=20.0)
    verdict = admit(store, 20.0)
    assert (verdict.decision, verdict.failures) == ("open", 3)
    assert verdict.reopens_in == pytest.approx(10.0)  # still counted from the opening


def test_nothing_frees_the_probe_and_keeps_the_circuit_half_open(new_store: StoreFactory) -> None:
    store = new_store()
    for _ in range(3):
        record(store, "failure")
    assert admit(store, 30.0).decision == "probe"
    assert admit(store, 30.0).decision == "probing"
    record(store, "nothing", probe=False, now=30.0)  # another call's nothing: still out
    assert admit(store, 30.0).decision == "probing"
    record(store, "nothing", probe=True, now=31.0)  # the probe was cancelled
    assert store.circuit_state("c") == "half_open"
    assert admit(store, 31.0) == CircuitVerdict("probe", 3)  # the next call probes
    assert admit(store, 31.0).decision == "probing"


# -- MemoryStore ------------------------------------------------------------------------------


def test_the_memory_store_is_both_kinds_of_store() -> None:
    store = MemoryStore()
    assert isinstance(store, RateLimitStore)
    assert isinstance(store, CircuitStore)
    assert aigen.MemoryRateLimitStore is MemoryStore


def test_a_bucket_and_a_circuit_of_one_key_are_apart() -> None:
    store = MemoryStore()
    Record("k", 0.0, "failure", False, 1).run(store)
    assert store.circuit_state("k") == "open"
    assert store.rate("k") is None  # the circuit made no bucket
    assert reserve(store, 0.0) == 0
    assert store.circuit_state("k") == "open"  # and the bucket touched no circuit
    assert repr(store) == "MemoryStore(1 bucket(s), 1 circuit(s))"


def test_what_the_inspection_helpers_say_of_unknown_keys() -> None:
    store = MemoryStore()
    assert store.rate("nobody") is None
    assert store.circuit_state("nobody") == "closed"


# -- run and arun ---------------------------------------------------------------------------

EVERY_OP: list[tuple[StoreOp[Any], str]] = [
    (Reserve("k", 1.0, 2, 60, 5.0, 3), "reserve"),
    (Refund("k", 1.0, 60, 2), "refund"),
    (Hold("k", 9.0, 60), "hold_until"),
    (ChangeRate("k", RateChange(factor=0.5), 60), "change_rate"),
    (Admit("k", 1.0, 30.0), "admit"),
    (Record("k", 1.0, "failure", False, 3), "record"),
]


class SyncOnly:
    """A store with only the plain methods: it answers each with its name."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("a") and name[1:] in {method for _, method in EVERY_OP}:
            raise AttributeError(name)  # no coroutine twins here

        def method(*args: Any) -> str:
            self.calls.append((name, args))
            return name

        return method


class WithTwins(SyncOnly):
    """A store with a coroutine twin for every plain method."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("a") and name[1:] in {method for _, method in EVERY_OP}:

            async def twin(*args: Any) -> str:
                await asyncio.sleep(0)  # a real await: the driver must await it
                self.calls.append((name, args))
                return name

            return twin
        return super().__getattr__(name)


@pytest.mark.parametrize(("op", "method"), EVERY_OP, ids=[m for _, m in EVERY_OP])
def test_run_calls_the_plain_method_even_when_a_twin_exists(op: StoreOp[Any], method: str) -> None:
    for store in (SyncOnly(), WithTwins()):
        assert op.run(store) == method
        assert store.calls == [(method, op.arguments())]


@pytest.mark.parametrize(("op", "method"), EVERY_OP, ids=[m for _, m in EVERY_OP])
def test_arun_awaits_the_coroutine_twin_when_the_store_has_one(
    op: StoreOp[Any], method: str
) -> None:
    store = WithTwins()
    assert asyncio.run(op.arun(store)) == "a" + method
    assert store.calls == [("a" + method, op.arguments())]


@pytest.mark.parametrize(("op", "method"), EVERY_OP, ids=[m for _, m in EVERY_OP])
def test_arun_falls_back_to_the_plain_method(op: StoreOp[Any], method: str) -> None:
    store = SyncOnly()
    assert asyncio.run(op.arun(store)) == method
    assert store.calls == [(method, op.arguments())]


def test_the_arguments_are_the_store_methods_positional_arguments_in_order() -> None:
    assert Reserve("k", 1.0, 2, 60).arguments() == ("k", 1.0, 2, 60, None, 1)
    assert Reserve("k", 1.0, 2, 60, 5.0, 3).arguments() == ("k", 1.0, 2, 60, 5.0, 3)
    assert Refund("k", 1.0, 60).arguments() == ("k", 1.0, 60, 1)
    assert Hold("k", 9.0, 60).arguments() == ("k", 9.0, 60)
    change = RateChange(step=3.0)
    assert ChangeRate("k", change, 60).arguments() == ("k", change, 60)
    assert Admit("k", 1.0, 30.0).arguments() == ("k", 1.0, 30.0)
    assert Record("k", 1.0, "nothing", True, 3).arguments() == ("k", 1.0, "nothing", True, 3)


def test_arun_on_the_memory_store_gives_what_run_gives() -> None:
    ops: list[StoreOp[Any]] = [
        Reserve("k", 0.0, 1, 60),
        Reserve("k", 0.0, 1, 60, None, 2),
        Refund("k", 0.0, 60),
        Hold("k", 5.0, 60),
        ChangeRate("k", RateChange(factor=0.5), 60),
        Reserve("k", 0.0, 1, 60),
        Record("k", 0.0, "failure", False, 1),
        Admit("k", 1.0, 30.0),
    ]

    async def arun_all(store: MemoryStore) -> list[Any]:
        return [await op.arun(store) for op in ops]

    assert asyncio.run(arun_all(MemoryStore())) == run(MemoryStore(), ops)


# -- through the clients --------------------------------------------------------------------


class TwinStore:
    """Both kinds of store, plain and coroutine methods alike, over one `MemoryStore`;
    records which kind each call used."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.calls: list[str] = []

    def _do(self, name: str, *args: Any, twin: bool = False) -> Any:
        self.calls.append("a" + name if twin else name)
        return getattr(self.inner, name)(*args)

    def reserve(self, *args: Any) -> float:
        return self._do("reserve", *args)  # type: ignore[no-any-return]

    def refund(self, *args: Any) -> None:
        self._do("refund", *args)

    def hold_until(self, *args: Any) -> None:
        self._do("hold_until", *args)

    def change_rate(self, *args: Any) -> float:
        return self._do("change_rate", *args)  # type: ignore[no-any-return]

    def admit(self, *args: Any) -> CircuitVerdict:
        return self._do("admit", *args)  # type: ignore[no-any-return]

    def record(self, *args: Any) -> None:
        self._do("record", *args)

    async def areserve(self, *args: Any) -> float:
        return self._do("reserve", *args, twin=True)  # type: ignore[no-any-return]

    async def arefund(self, *args: Any) -> None:
        self._do("refund", *args, twin=True)

    async def ahold_until(self, *args: Any) -> None:
        self._do("hold_until", *args, twin=True)

    async def achange_rate(self, *args: Any) -> float:
        return self._do("change_rate", *args, twin=True)  # type: ignore[no-any-return]

    async def aadmit(self, *args: Any) -> CircuitVerdict:
        return self._do("admit", *args, twin=True)  # type: ignore[no-any-return]

    async def arecord(self, *args: Any) -> None:
        self._do("record", *args, twin=True)


def test_each_client_uses_its_own_kind_of_store_method(
    make_client: Any, kit: Any, api: Any, client_kind: str, fake_time: FakeTime
) -> None:
    store = TwinStore()
    assert isinstance(store, RateLimitStore)
    assert isinstance(store, CircuitStore)
    api.side_effect = [kit.success(), kit.rate_limited(2.0), kit.success()]
    made = make_client(
        provider=kit.name,
        rate_limit=RateLimit(requests_per_minute=60, store=store),
        circuit_breaker=CircuitBreaker(store=store),
        max_retries=1,
    )
    made.generate("x")
    made.generate("y")
    expected = {"reserve", "hold_until", "change_rate", "admit", "record"}
    if client_kind == "async":
        expected = {"a" + name for name in expected}
    assert set(store.calls) == expected
    assert store.calls.count("areserve" if client_kind == "async" else "reserve") == 3
    assert fake_time.sleeps == pytest.approx([1.0, 2.0])  # the slot, then the 429's hint
