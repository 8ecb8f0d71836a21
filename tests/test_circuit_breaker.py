"""The circuit breaker (SPEC: Protecting the quota and the app; aigen/_circuit.py).

- `CircuitState` alone, with a clock moved by hand: closed, open, half-open, the probe.
- Both clients, for each provider, with fake time and a mocked endpoint (`kit`/`api`):
  what opens the circuit, what does not, that an open circuit sends nothing, and that
  after the cool-down one probe decides.
- Both clients against the fake servers, with requests held in flight (`Hold`): many
  threads or tasks at a half-open circuit, and exactly one probe reaches the server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pydantic
import pytest

import aigen
from aigen import CircuitBreaker, CircuitOpenError, RateLimit, RetryPolicy
from aigen._circuit import CircuitState, counts_against_provider
from aigen.testing import FakeServer, fake_server, overloaded

from .conftest import FakeTime
from .kits import Hold, run_concurrently, run_on_loop

THRESHOLD = 3
RESET = 30.0


class Clock:
    """A monotonic clock a unit test moves by hand."""

    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_state(
    threshold: int = THRESHOLD, reset_timeout: float = RESET
) -> tuple[CircuitState, Clock]:
    clock = Clock()
    settings = CircuitBreaker(failure_threshold=threshold, reset_timeout=reset_timeout)
    return CircuitState(settings, clock), clock


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


def open_state(state: CircuitState, threshold: int = THRESHOLD) -> None:
    for _ in range(threshold):
        state.record(server_error(), probe=False)


# -- CircuitState with a hand-moved clock ---------------------------------------------------


def test_a_new_circuit_is_closed_and_admits_calls() -> None:
    state, _ = make_state()
    assert state.state == "closed"
    assert state.admit() is False  # admitted, and not as a probe


def test_the_circuit_opens_after_threshold_consecutive_failures() -> None:
    state, _ = make_state()
    for _ in range(THRESHOLD - 1):
        state.record(server_error(), probe=False)
        assert state.state == "closed"
        assert state.admit() is False
    state.record(server_error(), probe=False)
    assert state.state == "open"


def test_a_threshold_of_one_opens_on_the_first_failure() -> None:
    state, _ = make_state(threshold=1)
    state.record(aigen.APIConnectionError("refused"), probe=False)
    assert state.state == "open"


def test_an_open_circuit_refuses_with_the_time_left() -> None:
    state, clock = make_state()
    open_state(state)
    with pytest.raises(CircuitOpenError) as caught:
        state.admit()
    assert "30.0 s" in str(caught.value)
    assert f"last {THRESHOLD} calls failed" in str(caught.value)
    clock.now += 12.0
    with pytest.raises(CircuitOpenError) as caught:
        state.admit()
    assert "18.0 s" in str(caught.value)
    clock.now += RESET - 12.0 - 0.01
    with pytest.raises(CircuitOpenError):
        state.admit()
    assert state.state == "open"


def test_circuit_open_error_is_a_generation_error() -> None:
    assert issubclass(CircuitOpenError, aigen.GenerationError)


def test_after_the_cool_down_exactly_one_probe_is_let_through() -> None:
    state, clock = make_state()
    open_state(state)
    clock.now += RESET
    assert state.admit() is True  # the probe
    assert state.state == "half_open"
    for _ in range(5):
        with pytest.raises(CircuitOpenError) as caught:
            state.admit()
        assert "probe" in str(caught.value)


def test_a_successful_probe_closes_the_circuit() -> None:
    state, clock = make_state()
    open_state(state)
    clock.now += RESET
    assert state.admit() is True
    state.record(None, probe=True)
    assert state.state == "closed"
    assert state.admit() is False
    # The count starts again from zero.
    for _ in range(THRESHOLD - 1):
        state.record(server_error(), probe=False)
    assert state.state == "closed"


def test_a_failed_probe_reopens_for_a_whole_cool_down() -> None:
    state, clock = make_state()
    open_state(state)
    clock.now += RESET + 5.0
    assert state.admit() is True
    clock.now += 2.0  # the probe took 2 s to fail
    state.record(server_error(), probe=True)
    assert state.state == "open"
    with pytest.raises(CircuitOpenError) as caught:
        state.admit()
    assert "30.0 s" in str(caught.value)  # counted from the probe's failure
    clock.now += RESET
    assert state.admit() is True  # the next probe


@pytest.mark.parametrize("name", PROVIDER_UP)
def test_a_probe_answered_by_a_provider_that_is_up_closes_the_circuit(name: str) -> None:
    state, clock = make_state()
    open_state(state)
    clock.now += RESET
    assert state.admit() is True
    state.record(PROVIDER_UP[name](), probe=True)
    assert state.state == "closed"


@pytest.mark.parametrize("name", PROVIDER_FAILURES)
def test_provider_failures_count(name: str) -> None:
    state, _ = make_state()
    for _ in range(THRESHOLD):
        state.record(PROVIDER_FAILURES[name](), probe=False)
    assert state.state == "open"
    assert counts_against_provider(PROVIDER_FAILURES[name]())


@pytest.mark.parametrize("name", PROVIDER_UP)
def test_answers_from_a_provider_that_is_up_never_count(name: str) -> None:
    state, _ = make_state()
    for _ in range(THRESHOLD * 3):
        state.record(PROVIDER_UP[name](), probe=False)
    assert state.state == "closed"
    assert not counts_against_provider(PROVIDER_UP[name]())


@pytest.mark.parametrize("name", PROVIDER_UP)
def test_answers_from_a_provider_that_is_up_reset_the_count(name: str) -> None:
    state, _ = make_state()
    for _ in range(THRESHOLD - 1):
        state.record(server_error(), probe=False)
    state.record(PROVIDER_UP[name](), probe=False)
    for _ in range(THRESHOLD - 1):
        state.record(server_error(), probe=False)
    assert state.state == "closed"  # never THRESHOLD in a row


def test_a_success_resets_the_count() -> None:
    state, _ = make_state()
    for _ in range(THRESHOLD - 1):
        state.record(server_error(), probe=False)
    state.record(None, probe=False)
    for _ in range(THRESHOLD - 1):
        state.record(server_error(), probe=False)
    assert state.state == "closed"


def test_an_abandoned_probe_lets_another_call_probe() -> None:
    state, clock = make_state()
    open_state(state)
    clock.now += RESET
    assert state.admit() is True
    state.abandon_probe()  # cancelled: nothing was learnt
    assert state.state == "half_open"
    assert state.admit() is True  # a new probe
    with pytest.raises(CircuitOpenError):
        state.admit()


def test_exactly_one_of_many_threads_gets_the_probe() -> None:
    state, clock = make_state()
    open_state(state)
    clock.now += RESET
    threads = 16
    barrier = threading.Barrier(threads)

    def admit(_: int) -> object:
        barrier.wait(timeout=5)
        try:
            return state.admit()
        except CircuitOpenError as error:
            return error

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(admit, range(threads)))
    assert outcomes.count(True) == 1
    assert sum(isinstance(o, CircuitOpenError) for o in outcomes) == threads - 1


def test_failures_from_many_threads_are_all_counted() -> None:
    state, _ = make_state(threshold=400)
    threads = 8
    barrier = threading.Barrier(threads)

    def fail(_: int) -> None:
        barrier.wait(timeout=5)
        for _ in range(50):
            state.record(server_error(), probe=False)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fail, range(threads)))
    assert state.state == "open"  # 8 x 50 = 400 failures, none lost


# -- CircuitBreaker settings ---------------------------------------------------------------


def test_circuit_breaker_defaults() -> None:
    settings = CircuitBreaker()
    assert (settings.failure_threshold, settings.reset_timeout) == (5, 30.0)


@pytest.mark.parametrize(
    "keywords",
    [
        {"failure_threshold": 0},
        {"failure_threshold": -1},
        {"reset_timeout": 0},
        {"reset_timeout": -5.0},
        {"threshold": 3},  # a misspelt keyword is refused, not ignored
    ],
)
def test_bad_circuit_breaker_settings_are_refused(keywords: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        CircuitBreaker(**keywords)


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
    assert made.target._engine.circuit is None
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
    circuit = client._engine.circuit

    if client_kind == "sync":
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(client.generate, "holds the only slot")
            assert hold.wait_held(1)
            with pytest.raises(aigen.APITimeoutError):
                client.generate("finds no slot")
            state = circuit.state
            hold.release()
            holder.exception()
    else:

        async def scenario() -> str:
            import asyncio

            holder = asyncio.ensure_future(client.generate("holds the only slot"))
            assert await hold.await_held(1)
            with pytest.raises(aigen.APITimeoutError):
                await client.generate("finds no slot")
            seen = circuit.state
            hold.release()
            await asyncio.gather(holder, return_exceptions=True)
            return seen

        state = run_on_loop(made, scenario())
    assert state == "closed"
