"""The circuit breaker (SPEC: Protecting the quota and the app; aigen/_circuit.py).

- The breaker alone, with a clock moved by hand: `Breaker` builds the store operations
  (`Admit`, `Record`), the store (`MemoryStore`, aigen/_store.py) keeps the state, and
  `Circuit` below carries them out as a call's flow does: closed, open, half-open, the probe.
- Both clients, for each provider, with fake time and a mocked endpoint (`kit`/`api`):
  what opens the circuit, what does not, that an open circuit sends nothing, and that
  after the cool-down one probe decides.
- Both clients against the fake servers, with requests held in flight (`Hold`): many
  threads or tasks at a half-open circuit, and exactly one probe reaches the server.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pydantic
import pytest

import aigen
from aigen import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitStore,
    MemoryStore,
    RateLimit,
    RetryPolicy,
)
from aigen._circuit import Breaker, counts_against_provider, outcome_of, refusal
from aigen._errors import held_back
from aigen._store import Admit, CircuitVerdict, Record
from aigen.testing import FakeServer, fake_server, overloaded

from .conftest import FakeTime
from .kits import Hold, run_concurrently, run_on_loop

THRESHOLD = 3
RESET = 30.0


class Circuit:
    """A breaker, its store, and a monotonic clock (`now`) a unit test moves by hand.

    `admit` and `record` carry the breaker's operations out on the store and read the
    answers as a call's flow does (aigen/_flow.py): a refused call raises
    `refusal(verdict)`, and a call's error reaches the store as `outcome_of(error)`.
    """

    def __init__(self, threshold: int = THRESHOLD, reset_timeout: float = RESET) -> None:
        settings = CircuitBreaker(failure_threshold=threshold, reset_timeout=reset_timeout)
        self.breaker = Breaker(settings, key="k")
        assert isinstance(self.breaker.store, MemoryStore)
        self.store: MemoryStore = self.breaker.store
        self.now = 500.0

    @property
    def state(self) -> str:
        return self.store.circuit_state("k")

    def verdict(self) -> CircuitVerdict:
        return self.breaker.admit(self.now).run(self.store)

    def admit(self) -> bool:
        """Whether the call is the probe; raises `CircuitOpenError` if it is refused."""
        verdict = self.verdict()
        if verdict.decision in ("open", "probing"):
            raise refusal(verdict)
        return verdict.decision == "probe"

    def record(self, error: BaseException | None, *, probe: bool) -> None:
        self.breaker.record(self.now, outcome_of(error), probe=probe).run(self.store)

    def abandon_probe(self) -> None:
        """What the flow records for a probe that was cancelled: nothing was learnt."""
        self.breaker.record(self.now, "nothing", probe=True).run(self.store)


def server_error(status: int = 503) -> aigen.ServerError:
    return aigen.ServerError("overloaded", status_code=status, provider="gemini")


# Errors that say the provider is down: they count.
PROVIDER_FAILURES: dict[str, Callable[[], BaseException]] = {
    "500": lambda: server_error(500),
    "502": lambda: server_error(502),
    "503": lambda: server_error(503),
    "504": lambda: server_error(504),
    "connection": lambda: aigen.APIConnectionError("connection refused"),
    "timeout": lambda: aigen.APITimeoutError("read timeout"),
}

# Answers that show the provider is up: they never count, and end a run of failures.
PROVIDER_UP: dict[str, Callable[[], BaseException]] = {
    "400": lambda: aigen.BadRequestError("bad", status_code=400, provider="openai"),
    "401": lambda: aigen.AuthenticationError("key", status_code=401, provider="openai"),
    "404": lambda: aigen.NotFoundError("model", status_code=404, provider="gemini"),
    "content-policy": lambda: aigen.ContentPolicyError(
        "refused", reason="moderation_blocked", stage="prompt"
    ),
    "429": lambda: aigen.RateLimitError("slow down", status_code=429, provider="openai"),
    "quota": lambda: aigen.QuotaExceededError("no credit", status_code=429, provider="openai"),
    "no-image": lambda: aigen.NoImageError("text only", text="a poem"),
    "malformed": lambda: aigen.GenerationError("not JSON"),
}

# Errors aigen raised itself before sending anything: the provider said nothing.
HELD_BACK: dict[str, Callable[[], BaseException]] = {
    "timeout": lambda: held_back(aigen.APITimeoutError("rate limit past the deadline")),
    "circuit-open": lambda: held_back(CircuitOpenError("refused")),
}


def open_circuit(circuit: Circuit, threshold: int = THRESHOLD) -> None:
    for _ in range(threshold):
        circuit.record(server_error(), probe=False)


# -- the breaker and its store, with a hand-moved clock -----------------------------------


def test_a_new_circuit_is_closed_and_admits_calls() -> None:
    circuit = Circuit()
    assert circuit.state == "closed"
    assert circuit.admit() is False  # admitted, and not as a probe


def test_the_circuit_opens_after_threshold_consecutive_failures() -> None:
    circuit = Circuit()
    for _ in range(THRESHOLD - 1):
        circuit.record(server_error(), probe=False)
        assert circuit.state == "closed"
        assert circuit.admit() is False
    circuit.record(server_error(), probe=False)
    assert circuit.state == "open"


def test_a_threshold_of_one_opens_on_the_first_failure() -> None:
    circuit = Circuit(threshold=1)
    circuit.record(aigen.APIConnectionError("refused"), probe=False)
    assert circuit.state == "open"


def test_an_open_circuit_refuses_with_the_time_left() -> None:
    circuit = Circuit()
    open_circuit(circuit)
    with pytest.raises(CircuitOpenError) as caught:
        circuit.admit()
    assert "30.0 s" in str(caught.value)
    assert f"last {THRESHOLD} calls failed" in str(caught.value)
    circuit.now += 12.0
    with pytest.raises(CircuitOpenError) as caught:
        circuit.admit()
    assert "18.0 s" in str(caught.value)
    circuit.now += RESET - 12.0 - 0.01
    with pytest.raises(CircuitOpenError):
        circuit.admit()
    assert circuit.state == "open"


def test_circuit_open_error_is_a_generation_error() -> None:
    assert issubclass(CircuitOpenError, aigen.GenerationError)


def test_after_the_cool_down_exactly_one_probe_is_let_through() -> None:
    circuit = Circuit()
    open_circuit(circuit)
    circuit.now += RESET
    assert circuit.admit() is True  # the probe
    assert circuit.state == "half_open"
    for _ in range(5):
        with pytest.raises(CircuitOpenError) as caught:
            circuit.admit()
        assert "probe" in str(caught.value)


def test_a_successful_probe_closes_the_circuit() -> None:
    circuit = Circuit()
    open_circuit(circuit)
    circuit.now += RESET
    assert circuit.admit() is True
    circuit.record(None, probe=True)
    assert circuit.state == "closed"
    assert circuit.admit() is False
    # The count starts again from zero.
    for _ in range(THRESHOLD - 1):
        circuit.record(server_error(), probe=False)
    assert circuit.state == "closed"


def test_a_failed_probe_reopens_for_a_whole_cool_down() -> None:
    circuit = Circuit()
    open_circuit(circuit)
    circuit.now += RESET + 5.0
    assert circuit.admit() is True
    circuit.now += 2.0  # the probe took 2 s to fail
    circuit.record(server_error(), probe=True)
    assert circuit.state == "open"
    with pytest.raises(CircuitOpenError) as caught:
        circuit.admit()
    assert "30.0 s" in str(caught.value)  # counted from the probe's failure
    circuit.now += RESET
    assert circuit.admit() is True  # the next probe


@pytest.mark.parametrize("name", PROVIDER_UP)
def test_a_probe_answered_by_a_provider_that_is_up_closes_the_circuit(name: str) -> None:
    circuit = Circuit()
    open_circuit(circuit)
    circuit.now += RESET
    assert circuit.admit() is True
    circuit.record(PROVIDER_UP[name](), probe=True)
    assert circuit.state == "closed"


@pytest.mark.parametrize("name", PROVIDER_FAILURES)
def test_provider_failures_count(name: str) -> None:
    circuit = Circuit()
    for _ in range(THRESHOLD):
        circuit.record(PROVIDER_FAILURES[name](), probe=False)
    assert circuit.state == "open"
    assert counts_against_provider(PROVIDER_FAILURES[name]())


@pytest.mark.parametrize("name", PROVIDER_UP)
def test_answers_from_a_provider_that_is_up_never_count(name: str) -> None:
    circuit = Circuit()
    for _ in range(THRESHOLD * 3):
        circuit.record(PROVIDER_UP[name](), probe=False)
    assert circuit.state == "closed"
    assert not counts_against_provider(PROVIDER_UP[name]())


@pytest.mark.parametrize("name", PROVIDER_UP)
def test_answers_from_a_provider_that_is_up_reset_the_count(name: str) -> None:
    circuit = Circuit()
    for _ in range(THRESHOLD - 1):
        circuit.record(server_error(), probe=False)
    circuit.record(PROVIDER_UP[name](), probe=False)
    for _ in range(THRESHOLD - 1):
        circuit.record(server_error(), probe=False)
    assert circuit.state == "closed"  # never THRESHOLD in a row


def test_a_success_resets_the_count() -> None:
    circuit = Circuit()
    for _ in range(THRESHOLD - 1):
        circuit.record(server_error(), probe=False)
    circuit.record(None, probe=False)
    for _ in range(THRESHOLD - 1):
        circuit.record(server_error(), probe=False)
    assert circuit.state == "closed"


def test_an_abandoned_probe_lets_another_call_probe() -> None:
    circuit = Circuit()
    open_circuit(circuit)
    circuit.now += RESET
    assert circuit.admit() is True
    circuit.abandon_probe()  # cancelled: nothing was learnt
    assert circuit.state == "half_open"
    assert circuit.admit() is True  # a new probe
    with pytest.raises(CircuitOpenError):
        circuit.admit()


def test_exactly_one_of_many_threads_gets_the_probe() -> None:
    circuit = Circuit()
    open_circuit(circuit)
    circuit.now += RESET
    threads = 16
    barrier = threading.Barrier(threads)

    def admit(_: int) -> object:
        barrier.wait(timeout=5)
        try:
            return circuit.admit()
        except CircuitOpenError as error:
            return error

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(admit, range(threads)))
    assert outcomes.count(True) == 1
    assert sum(isinstance(o, CircuitOpenError) for o in outcomes) == threads - 1


def test_failures_from_many_threads_are_all_counted() -> None:
    circuit = Circuit(threshold=400)
    threads = 8
    barrier = threading.Barrier(threads)

    def fail(_: int) -> None:
        barrier.wait(timeout=5)
        for _ in range(50):
            circuit.record(server_error(), probe=False)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fail, range(threads)))
    assert circuit.state == "open"  # 8 x 50 = 400 failures, none lost


def test_the_breaker_returns_its_decisions_as_operations() -> None:
    breaker = Breaker(CircuitBreaker(failure_threshold=THRESHOLD, reset_timeout=RESET), key="k")
    assert breaker.admit(5.0) == Admit("k", 5.0, RESET)
    assert breaker.record(6.0, "failure", probe=True) == Record(
        "k", 6.0, "failure", True, THRESHOLD
    )
    assert breaker.record(6.0, "nothing", probe=False) == Record(
        "k", 6.0, "nothing", False, THRESHOLD
    )
    for op in (breaker.admit(5.0), breaker.record(6.0, "success", probe=False)):
        hash(op)  # frozen, and nothing in it is a function: a remote store can run it
        assert not any(callable(getattr(op, f.name)) for f in dataclasses.fields(op))
    # Building them touched no store.
    assert repr(breaker.store) == "MemoryStore(0 bucket(s), 0 circuit(s))"


def test_the_verdicts_say_why_and_for_how_long() -> None:
    circuit = Circuit()
    assert circuit.verdict() == CircuitVerdict("go")
    open_circuit(circuit)
    circuit.now += 12.0
    verdict = circuit.verdict()
    assert (verdict.decision, verdict.failures) == ("open", THRESHOLD)
    assert verdict.reopens_in == pytest.approx(RESET - 12.0)
    circuit.now += RESET
    assert circuit.verdict() == CircuitVerdict("probe", THRESHOLD)
    assert circuit.verdict() == CircuitVerdict("probing", THRESHOLD)


def test_refusals_explain_themselves() -> None:
    opened = refusal(CircuitVerdict("open", 4, 12.34))
    assert isinstance(opened, CircuitOpenError)
    assert str(opened) == (
        "the last 4 calls failed, so this one was not sent; the next call goes through in 12.3 s"
    )
    probing = refusal(CircuitVerdict("probing", 4))
    assert "a probe call is deciding whether the provider is back" in str(probing)


def test_how_a_call_ended_is_one_of_three_outcomes() -> None:
    assert outcome_of(None) == "success"
    for make in PROVIDER_FAILURES.values():
        assert outcome_of(make()) == "failure"
    for make in PROVIDER_UP.values():
        assert outcome_of(make()) == "success"
    for make in HELD_BACK.values():
        assert outcome_of(make()) == "nothing"


@pytest.mark.parametrize("name", HELD_BACK)
def test_calls_aigen_held_back_never_count(name: str) -> None:
    assert not counts_against_provider(HELD_BACK[name]())
    circuit = Circuit(threshold=1)
    for _ in range(3):
        circuit.record(HELD_BACK[name](), probe=False)
    assert circuit.state == "closed"
    # Nor do they end a run of failures: the provider said nothing.
    circuit = Circuit()
    for _ in range(THRESHOLD - 1):
        circuit.record(server_error(), probe=False)
    circuit.record(HELD_BACK[name](), probe=False)
    circuit.record(server_error(), probe=False)
    assert circuit.state == "open"


def test_circuits_are_kept_per_key() -> None:
    store = MemoryStore()
    first = Breaker(CircuitBreaker(failure_threshold=1, store=store), key="a")
    second = Breaker(CircuitBreaker(failure_threshold=1, store=store), key="b")
    first.record(0.0, "failure", probe=False).run(store)
    assert store.circuit_state("a") == "open"
    assert store.circuit_state("b") == "closed"
    assert second.admit(0.0).run(store) == CircuitVerdict("go")


def test_the_memory_store_follows_the_circuit_store_protocol() -> None:
    assert isinstance(MemoryStore(), CircuitStore)


# -- CircuitBreaker settings ---------------------------------------------------------------


def test_circuit_breaker_defaults() -> None:
    settings = CircuitBreaker()
    assert (settings.failure_threshold, settings.reset_timeout, settings.store) == (
        5,
        30.0,
        None,
    )


@pytest.mark.parametrize(
    "keywords",
    [
        {"failure_threshold": 0},
        {"failure_threshold": -1},
        {"reset_timeout": 0},
        {"reset_timeout": -5.0},
        {"threshold": 3},  # a misspelt keyword is refused, not ignored
        {"store": object()},  # not a CircuitStore
    ],
)
def test_bad_circuit_breaker_settings_are_refused(keywords: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        CircuitBreaker(**keywords)


def test_each_breaker_without_a_store_gets_its_own() -> None:
    settings = CircuitBreaker()
    first = Breaker(settings, key="k")
    second = Breaker(settings, key="k")
    assert isinstance(first.store, MemoryStore)
    assert first.store is not second.store


def test_a_breaker_given_a_store_uses_it() -> None:
    store = MemoryStore()
    assert Breaker(CircuitBreaker(store=store), key="k").store is store


# -- through the clients, with fake time ---------------------------------------------------


def client(make_client: Any, kit: Any, **kwargs: Any) -> Any:
    kwargs.setdefault(
        "circuit_breaker", CircuitBreaker(failure_threshold=THRESHOLD, reset_timeout=RESET)
    )
    if "retry" not in kwargs:
        kwargs.setdefault("max_retries", 0)
    return make_client(provider=kit.name, **kwargs)


def trip(made: Any, kit: Any, api: Any, count: int = THRESHOLD) -> None:
    """`count` calls that each end in a 503."""
    api.side_effect = [kit.server_error(503) for _ in range(count)]
    for _ in range(count):
        with pytest.raises(aigen.ServerError):
            made.generate("x")


def test_an_open_circuit_refuses_calls_without_sending(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    made = client(make_client, kit)
    trip(made, kit, api)
    assert api.call_count == THRESHOLD
    api.side_effect = lambda request: kit.success()
    for _ in range(3):
        with pytest.raises(CircuitOpenError) as caught:
            made.generate("x")
        error = caught.value
        assert error.attempts == 0
        assert error.generation_id
        assert "30.0 s" in str(error)
    assert api.call_count == THRESHOLD  # nothing more was sent
    assert fake_time.sleeps == []  # and nothing waited


def test_fewer_failures_than_the_threshold_keep_the_circuit_closed(
    make_client: Any, kit: Any, api: Any
) -> None:
    made = client(make_client, kit)
    trip(made, kit, api, THRESHOLD - 1)
    api.side_effect = [kit.success()]
    assert made.generate("x").attempts == 1


def test_after_the_cool_down_one_probe_goes_and_its_success_closes(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    made = client(make_client, kit)
    trip(made, kit, api)
    api.side_effect = lambda request: kit.success()
    fake_time.now += RESET - 1.0
    with pytest.raises(CircuitOpenError) as caught:
        made.generate("x")
    assert "1.0 s" in str(caught.value)
    fake_time.now += 1.0
    assert made.generate("probe").attempts == 1
    assert api.call_count == THRESHOLD + 1
    for _ in range(3):
        made.generate("x")  # closed again
    assert api.call_count == THRESHOLD + 4


def test_a_failed_probe_reopens_the_circuit(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    made = client(make_client, kit)
    trip(made, kit, api)
    fake_time.now += RESET
    api.side_effect = [kit.server_error(503)]
    with pytest.raises(aigen.ServerError):
        made.generate("probe")
    with pytest.raises(CircuitOpenError) as caught:
        made.generate("x")
    assert "30.0 s" in str(caught.value)
    assert api.call_count == THRESHOLD + 1


def test_a_probe_is_not_retried_into_a_second_request_when_it_fails(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    # With retries on, the probe is still one call: its retries are its own.
    made = client(make_client, kit, max_retries=2)
    api.side_effect = [kit.server_error(503)] * (3 * THRESHOLD + 3)
    for _ in range(THRESHOLD):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    assert api.call_count == 3 * THRESHOLD
    fake_time.now += RESET
    with pytest.raises(aigen.ServerError) as caught:
        made.generate("probe")
    assert caught.value.attempts == 3
    with pytest.raises(CircuitOpenError):
        made.generate("x")
    assert api.call_count == 3 * THRESHOLD + 3


def test_a_call_counts_once_however_many_attempts_it_took(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    made = client(make_client, kit, max_retries=2)
    api.side_effect = [kit.server_error(503)] * 3 * (THRESHOLD - 1) + [kit.success()]
    for _ in range(THRESHOLD - 1):
        with pytest.raises(aigen.ServerError) as caught:
            made.generate("x")
        assert caught.value.attempts == 3
    assert made.generate("x").attempts == 1  # 6 failed attempts, 2 failed calls: closed


def test_a_call_that_recovers_on_retry_counts_as_a_success(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    made = client(make_client, kit, max_retries=1)
    api.side_effect = (
        [kit.server_error(503)] * 2 * (THRESHOLD - 1)
        + [
            kit.server_error(503),
            kit.success(),
        ]
        + [kit.server_error(503)] * 2 * (THRESHOLD - 1)
        + [kit.success()]
    )
    for _ in range(THRESHOLD - 1):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    assert made.generate("x").attempts == 2  # resets the count
    for _ in range(THRESHOLD - 1):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    assert made.generate("x").attempts == 1


@pytest.mark.parametrize(
    "cause", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")], ids=["connect", "timeout"]
)
def test_connection_errors_and_timeouts_count(
    make_client: Any, kit: Any, api: Any, cause: Exception
) -> None:
    made = client(make_client, kit)
    api.side_effect = cause
    for _ in range(THRESHOLD):
        with pytest.raises((aigen.APIConnectionError, aigen.APITimeoutError)):
            made.generate("x")
    with pytest.raises(CircuitOpenError):
        made.generate("x")
    assert api.call_count == THRESHOLD


def answer(kit: Any, name: str) -> httpx.Response:
    return {
        "prompt_blocked": kit.prompt_blocked,
        "output_blocked": kit.output_blocked,
        "bad_request": kit.bad_request,
        "not_found": kit.not_found,
        "bad_key": kit.bad_key,
        "rate_limited": kit.rate_limited,
        "quota_exhausted": kit.quota_exhausted,
    }[name]()


PROVIDER_UP_ANSWERS = [
    ("prompt_blocked", aigen.ContentPolicyError),
    ("output_blocked", aigen.ContentPolicyError),
    ("bad_request", aigen.BadRequestError),
    ("not_found", aigen.NotFoundError),
    ("bad_key", aigen.AuthenticationError),
    ("rate_limited", aigen.RateLimitError),
    ("quota_exhausted", aigen.QuotaExceededError),
]


@pytest.mark.parametrize(("name", "error_class"), PROVIDER_UP_ANSWERS)
def test_answers_that_show_the_provider_is_up_never_open_the_circuit(
    make_client: Any, kit: Any, api: Any, name: str, error_class: type[Exception]
) -> None:
    made = client(make_client, kit, circuit_breaker=CircuitBreaker(failure_threshold=1))
    api.side_effect = lambda request: answer(kit, name)
    for _ in range(4):
        with pytest.raises(error_class):
            made.generate("x")
    assert api.call_count == 4


@pytest.mark.parametrize(("name", "error_class"), PROVIDER_UP_ANSWERS)
def test_answers_that_show_the_provider_is_up_reset_the_count(
    make_client: Any, kit: Any, api: Any, name: str, error_class: type[Exception]
) -> None:
    made = client(make_client, kit)
    failures = [kit.server_error(503)] * (THRESHOLD - 1)
    api.side_effect = [*failures, answer(kit, name), *failures, kit.success()]
    for _ in range(THRESHOLD - 1):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    with pytest.raises(error_class):
        made.generate("x")
    for _ in range(THRESHOLD - 1):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    assert made.generate("x").attempts == 1  # never THRESHOLD failures in a row


def test_the_circuit_breaker_is_off_by_default(make_client: Any, kit: Any, api: Any) -> None:
    made = make_client(provider=kit.name, max_retries=0)
    assert made.target._engine.breaker is None
    api.side_effect = lambda request: kit.server_error(503)
    for _ in range(25):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    assert api.call_count == 25


def test_circuit_breaker_none_is_the_off_switch(make_client: Any, kit: Any, api: Any) -> None:
    made = make_client(provider=kit.name, max_retries=0, circuit_breaker=None)
    api.side_effect = [kit.server_error(503)] * 10 + [kit.success()]
    for _ in range(10):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    assert made.generate("x").attempts == 1


def test_clients_have_their_own_circuits(make_client: Any, kit: Any, api: Any) -> None:
    first = client(make_client, kit)
    second = client(make_client, kit)
    trip(first, kit, api)
    api.side_effect = [kit.success()]
    assert second.generate("x").attempts == 1
    with pytest.raises(CircuitOpenError):
        first.generate("x")


def test_clients_given_one_store_share_a_circuit(make_client: Any, kit: Any, api: Any) -> None:
    shared = CircuitBreaker(failure_threshold=THRESHOLD, reset_timeout=RESET, store=MemoryStore())
    first = client(make_client, kit, circuit_breaker=shared)
    second = client(make_client, kit, circuit_breaker=shared)
    trip(first, kit, api)
    api.side_effect = [kit.success()]
    with pytest.raises(CircuitOpenError):
        second.generate("x")  # the first client's failures opened it for both
    assert api.call_count == THRESHOLD


def test_a_conversation_turn_is_refused_by_an_open_circuit(
    make_client: Any, kit: Any, api: Any
) -> None:
    made = client(make_client, kit)
    trip(made, kit, api)
    chat = made.conversation()
    with pytest.raises(CircuitOpenError):
        chat.send("a fox")
    assert api.call_count == THRESHOLD


def test_generate_many_reports_the_calls_an_open_circuit_refused(
    make_client: Any, kit: Any, api: Any
) -> None:
    made = client(make_client, kit, circuit_breaker=CircuitBreaker(failure_threshold=2))
    api.side_effect = lambda request: kit.server_error(503)
    results = made.generate_many([f"image {n}" for n in range(5)], concurrency=1)
    assert [type(result) for result in results] == [
        aigen.ServerError,
        aigen.ServerError,
        CircuitOpenError,
        CircuitOpenError,
        CircuitOpenError,
    ]
    assert api.call_count == 2
    assert len({result.generation_id for result in results}) == 5


def test_a_call_held_back_by_the_rate_limit_does_not_count_against_the_provider(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    made = client(
        make_client,
        kit,
        circuit_breaker=CircuitBreaker(failure_threshold=2, reset_timeout=1000.0),
        rate_limit=RateLimit(requests_per_minute=6),  # one slot every 10 s
        retry=RetryPolicy(deadline=5.0, max_retries=0),
    )
    api.side_effect = lambda request: kit.success()
    made.generate("x")
    for _ in range(2):
        with pytest.raises(aigen.APITimeoutError):
            made.generate("y")  # nothing sent
    fake_time.now += 100.0  # every slot is free again
    assert made.generate("z").attempts == 1  # not CircuitOpenError


# -- many threads or tasks, against the fake servers ---------------------------------------


@pytest.fixture(params=["gemini", "openai"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    with fake_server(str(request.param)) as fake:
        yield fake


@pytest.fixture
def hold(make_client: Any) -> Iterator[Hold]:
    held = Hold(engaged=False)
    yield held
    held.close()


def held_client(hold: Hold, make_client: Any, client_kind: str, server: FakeServer) -> Any:
    return hold.client(
        make_client,
        client_kind,
        provider=server.provider,
        base_url=server.base_url,
        timeout=3.0,
        max_retries=0,
        circuit_breaker=CircuitBreaker(failure_threshold=2, reset_timeout=RESET),
    )


def open_through(made: Any, server: FakeServer) -> None:
    server.script(overloaded(), overloaded())
    for _ in range(2):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    assert len(server.requests) == 2


CALLS = 10


def test_many_callers_at_an_open_circuit_send_nothing(
    make_client: Any, client_kind: str, server: FakeServer, hold: Hold
) -> None:
    made = held_client(hold, make_client, client_kind, server)
    open_through(made, server)

    def one(client: Any) -> Any:
        return client.generate("x")

    outcomes = run_concurrently(made, [one] * CALLS)
    assert all(isinstance(outcome, CircuitOpenError) for outcome in outcomes), outcomes
    assert len(server.requests) == 2


def test_exactly_one_probe_of_many_callers_reaches_the_server(
    make_client: Any, client_kind: str, server: FakeServer, hold: Hold, fake_time: FakeTime
) -> None:
    made = held_client(hold, make_client, client_kind, server)
    open_through(made, server)
    fake_time.now += RESET
    hold.engage()  # from now on the probe stays in flight until the others are refused

    lock = threading.Lock()
    finished = 0

    def done() -> None:
        nonlocal finished
        with lock:
            finished += 1
            if finished == CALLS - 1:
                hold.release()

    def one(client: Any) -> Any:
        if isinstance(client, aigen.AsyncClient):

            async def run() -> Any:
                try:
                    return await client.generate("x")
                finally:
                    done()

            return run()
        try:
            return client.generate("x")
        finally:
            done()

    outcomes = run_concurrently(made, [one] * CALLS)

    assert hold.held == 1
    assert len(server.requests) == 3  # the two failures and one probe
    successes = [o for o in outcomes if isinstance(o, aigen.GenerationResponse)]
    refused = [o for o in outcomes if isinstance(o, CircuitOpenError)]
    assert (len(successes), len(refused)) == (1, CALLS - 1), outcomes
    assert all("probe" in str(error) for error in refused)
    # The probe succeeded: the circuit is closed and calls go again.
    assert isinstance(made.generate("after"), aigen.GenerationResponse)
    assert len(server.requests) == 4


@pytest.mark.parametrize("client_kind", ["async"])
def test_a_cancelled_probe_lets_the_next_call_probe(
    make_client: Any, client_kind: str, server: FakeServer, hold: Hold, fake_time: FakeTime
) -> None:
    made = held_client(hold, make_client, client_kind, server)
    open_through(made, server)
    fake_time.now += RESET
    hold.engage()
    client = made.target

    async def cancel_the_probe() -> None:
        import asyncio

        probe = asyncio.ensure_future(client.generate("probe"))
        assert await hold.await_held(1)
        with pytest.raises(CircuitOpenError):
            await client.generate("refused while the probe is out")
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe

    run_on_loop(made, cancel_the_probe())
    hold.engaged = False
    hold.release()
    # The cancelled probe taught nothing; the next call is the new probe, and succeeds.
    assert isinstance(made.generate("next"), aigen.GenerationResponse)
    assert len(server.requests) == 3


def test_waiting_for_a_concurrency_slot_does_not_count_against_the_provider(
    make_client: Any, client_kind: str, server: FakeServer, hold: Hold
) -> None:
    made = hold.client(
        make_client,
        client_kind,
        real_time=True,
        provider=server.provider,
        base_url=server.base_url,
        timeout=3.0,
        max_concurrency=1,
        retry=RetryPolicy(deadline=0.2, max_retries=0),
        circuit_breaker=CircuitBreaker(failure_threshold=1),
    )
    hold.engage()
    client = made.target
    breaker = client._engine.breaker

    if client_kind == "sync":
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(client.generate, "holds the only slot")
            assert hold.wait_held(1)
            with pytest.raises(aigen.APITimeoutError):
                client.generate("finds no slot")
            state = breaker.store.circuit_state(breaker.key)
            hold.release()
            holder.exception()
    else:

        async def scenario() -> str:
            import asyncio

            holder = asyncio.ensure_future(client.generate("holds the only slot"))
            assert await hold.await_held(1)
            with pytest.raises(aigen.APITimeoutError):
                await client.generate("finds no slot")
            seen = breaker.store.circuit_state(breaker.key)
            hold.release()
            await asyncio.gather(holder, return_exceptions=True)
            return seen

        state = run_on_loop(made, scenario())
    assert state == "closed"
