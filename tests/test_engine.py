"""The engine's semantics, fixed once for both clients (the flow of actions, aigen/_flow.py).

- The deadline covers the whole exchange: a 200 whose status line and headers trickle in
  a byte at a time ends at the deadline, not when the trickle ends.
- A call aigen held back itself (no free `max_concurrency` slot, or a rate-limit wait past
  the deadline) tells the circuit breaker nothing: it neither closes an open circuit nor
  resets the count of failures.
- A call cancelled while it waits for its rate-limit slot gives the slot back.
- A call on a closed client, and an `AsyncClient` moved to a second event loop, get an
  aigen error that says what to do (or, for aigen's own pool, simply work).

Each runs for `Client` and `AsyncClient`, and for each provider where a wire is involved.
"""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import aigen
from aigen import CircuitBreaker, RateLimit, RetryPolicy
from aigen.testing import FakeClock, fake_server, overloaded, success, use_clock

from .conftest import API_KEY
from .kits import Hold, run_on_loop

PROVIDERS = ("gemini", "openai")
TINY_TIMEOUT = 3.0


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(provider: str) -> Iterator[Any]:
    with fake_server(provider) as fake:
        yield fake


def connect(make_client: Any, server: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("timeout", TINY_TIMEOUT)
    return make_client(provider=server.provider, base_url=server.base_url, **kwargs)


# -- the deadline covers the status line and headers ---------------------------------------


def test_a_trickled_status_line_ends_at_the_deadline(make_client: Any, server: Any) -> None:
    # Each byte arrives well within the read timeout: only the deadline can stop this.
    server.script(success(head_duration=6.0))
    made = connect(make_client, server, real_time=True, retry=RetryPolicy(deadline=1.0))
    started = time.monotonic()
    with pytest.raises(aigen.APITimeoutError) as caught:
        made.generate("a fox")
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.5, elapsed
    assert caught.value.attempts == 1  # the deadline leaves no time for a retry


def test_a_trickled_body_ends_at_the_deadline(make_client: Any, server: Any) -> None:
    server.script(success(body_duration=6.0, chunks=60))
    made = connect(make_client, server, real_time=True, retry=RetryPolicy(deadline=1.0))
    started = time.monotonic()
    with pytest.raises(aigen.APITimeoutError):
        made.generate("a fox")
    assert time.monotonic() - started < 2.5


def test_a_slow_but_timely_answer_is_kept(make_client: Any, server: Any) -> None:
    server.script(success(head_duration=0.3))
    made = connect(make_client, server, real_time=True, retry=RetryPolicy(deadline=3.0))
    assert made.generate("a fox").attempts == 1


# -- held back calls tell the breaker nothing ----------------------------------------------


def test_a_call_held_back_by_the_limiter_does_not_reset_the_failure_count(
    make_client: Any, server: Any, fake_time: FakeClock
) -> None:
    # Threshold 3: 503, 503, held back, 503 must open the circuit.
    server.default = overloaded()
    made = connect(
        make_client,
        server,
        circuit_breaker=CircuitBreaker(failure_threshold=3, reset_timeout=60),
        # One request a minute, and a deadline of 10 s: the third call would wait ~60 s.
        rate_limit=RateLimit(requests_per_minute=1, burst=2, adaptive=False),
        retry=RetryPolicy(max_retries=0, deadline=10.0),
    )
    for _ in range(2):
        with pytest.raises(aigen.ServerError):
            made.generate("x")
    with pytest.raises(aigen.APITimeoutError) as held:
        made.generate("held back by the limiter")
    assert held.value.held_back
    assert held.value.attempts == 0
    fake_time.sleep(120)  # the bucket refills; the breaker's count must still be 2
    with pytest.raises(aigen.ServerError):
        made.generate("x")
    with pytest.raises(aigen.CircuitOpenError):
        made.generate("not sent")
    assert len(server.requests) == 3


def test_a_probe_held_back_does_not_close_the_circuit(
    make_client: Any, server: Any, fake_time: FakeClock
) -> None:
    server.default = overloaded()
    made = connect(
        make_client,
        server,
        circuit_breaker=CircuitBreaker(failure_threshold=1, reset_timeout=30),
        rate_limit=RateLimit(requests_per_minute=1, adaptive=False),
        retry=RetryPolicy(max_retries=0, deadline=10.0),
    )
    with pytest.raises(aigen.ServerError):
        made.generate("opens the circuit")  # and takes the minute's only slot
    fake_time.sleep(31)  # half-open: the next call is the probe, but the limiter holds it
    with pytest.raises(aigen.APITimeoutError) as held:
        made.generate("the probe, held back")
    assert held.value.held_back
    fake_time.sleep(60)
    server.default = success()
    # Still half-open: the probe held back freed the probe's place, and this call takes it.
    assert made.generate("the real probe").attempts == 1
    breaker = made.target._engine.breaker
    assert breaker.store.circuit_state(breaker.key) == "closed"


def test_a_call_held_back_for_want_of_a_slot_tells_the_breaker_nothing(
    make_client: Any, client_kind: str, provider: str, hold: Hold
) -> None:
    with fake_server(provider) as server:
        server.default = overloaded()
        made = hold.client(
            make_client,
            client_kind,
            real_time=True,
            provider=server.provider,
            base_url=server.base_url,
            timeout=TINY_TIMEOUT,
            max_concurrency=1,
            circuit_breaker=CircuitBreaker(failure_threshold=2, reset_timeout=60),
            retry=RetryPolicy(max_retries=0, deadline=0.3),
        )
        hold.engaged = False  # the first call goes straight through
        with pytest.raises(aigen.ServerError):
            made.generate("first failure")
        hold.engage()
        client = made.target

        async def both() -> None:
            holder = asyncio.ensure_future(client.generate("holds the slot"))
            assert await hold.await_held(1)
            with pytest.raises(aigen.APITimeoutError):
                await client.generate("held back")
            hold.release()
            with pytest.raises(aigen.GenerationError):
                await holder

        if client_kind == "async":
            run_on_loop(made, both())
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as pool:
                holder = pool.submit(client.generate, "holds the slot")
                assert hold.wait_held(1)
                with pytest.raises(aigen.APITimeoutError):
                    client.generate("held back")
                hold.release()
                assert isinstance(holder.exception(timeout=5), aigen.GenerationError)
        # The holder's failure is the second: the circuit is open now.
        breaker = client._engine.breaker
        assert breaker.store.circuit_state(breaker.key) == "open"


@pytest.fixture
def hold() -> Iterator[Hold]:
    hold = Hold()
    yield hold
    hold.close()


# -- cancelled calls give their rate-limit slot back ---------------------------------------


def test_calls_cancelled_while_queued_give_their_slots_back(provider: str) -> None:
    """At 60 a minute, 20 tasks queued and cancelled must not make the next call wait 21 s."""
    clock = _LoopClock()

    async def scenario() -> float:
        with fake_server(provider) as server:
            async with aigen.AsyncClient(
                provider=server.provider,
                base_url=server.base_url,
                api_key=API_KEY,
                rate_limit=RateLimit(requests_per_minute=60, adaptive=False),
            ) as client:
                use_clock(client, clock)
                await client.generate("takes the first slot")
                queued = [asyncio.ensure_future(client.generate(f"q{i}")) for i in range(20)]
                await asyncio.sleep(0.05)  # every one is now sleeping for its slot
                assert len(clock.waiting) == 20
                for task in queued:
                    task.cancel()
                await asyncio.gather(*queued, return_exceptions=True)
                clock.blocking = False
                clock.waits.clear()
                await client.generate("the next call")
                return sum(clock.waits)

    waited = asyncio.run(scenario())
    assert waited <= 1.01, waited


def test_a_thread_interrupted_while_queued_gives_its_slot_back(provider: str) -> None:
    clock = FakeClock()
    interrupting = True

    def sleep(seconds: float) -> None:
        if interrupting:
            raise KeyboardInterrupt  # as a signal would, while the thread waits its turn
        FakeClock.sleep(clock, seconds)

    clock.sleep = sleep  # type: ignore[method-assign]
    with (
        fake_server(provider) as server,
        aigen.Client(
            provider=server.provider,
            base_url=server.base_url,
            api_key=API_KEY,
            rate_limit=RateLimit(requests_per_minute=60, adaptive=False),
        ) as client,
    ):
        use_clock(client, clock)
        client.generate("takes the slot now")
        for _ in range(5):
            with pytest.raises(KeyboardInterrupt):
                client.generate("queued, then interrupted")
        interrupting = False
        client.generate("next")
    # Had the interrupted calls kept their slots, this one would wait 6 s.
    assert clock.sleeps == [pytest.approx(1.0)]
    assert len(server.requests) == 2


class _LoopClock(FakeClock):
    """A fake clock whose `asleep` really suspends, while `blocking`, until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.blocking = True
        self.waiting: set[asyncio.Future[None]] = set()
        self.waits: list[float] = []

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if not self.blocking:
            self.now += seconds
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.add(future)
        try:
            await future
        finally:
            self.waiting.discard(future)


# -- closed clients and other event loops --------------------------------------------------


def test_a_closed_client_says_so(make_client: Any, client_kind: str, server: Any) -> None:
    made = connect(make_client, server)
    made.generate("works")
    if client_kind == "sync":
        made.close()
    else:
        made.aclose()
    with pytest.raises(aigen.ConfigurationError, match="is closed") as caught:
        made.generate("after close")
    assert "make a new" in str(caught.value)
    assert len(server.requests) == 1  # nothing was sent


def test_a_closed_http_client_says_so(client_kind: str, server: Any) -> None:
    if client_kind == "sync":
        http = httpx.Client()
        client: Any = aigen.Client(
            provider=server.provider, base_url=server.base_url, api_key=API_KEY, http_client=http
        )
        http.close()
        with pytest.raises(aigen.ConfigurationError, match="is closed"):
            client.generate("x")
        return

    async def scenario() -> None:
        http = httpx.AsyncClient()
        client = aigen.AsyncClient(
            provider=server.provider, base_url=server.base_url, api_key=API_KEY, http_client=http
        )
        await http.aclose()
        with pytest.raises(aigen.ConfigurationError, match="is closed"):
            await client.generate("x")

    asyncio.run(scenario())


def test_an_async_client_works_on_a_second_event_loop(server: Any) -> None:
    client = aigen.AsyncClient(
        provider=server.provider,
        base_url=server.base_url,
        api_key=API_KEY,
        max_concurrency=2,
    )

    async def one() -> int:
        return (await client.generate("a fox")).attempts

    assert asyncio.run(one()) == 1
    assert asyncio.run(one()) == 1  # a new loop: aigen's own pool starts afresh
    asyncio.run(client.aclose())
    assert len(server.requests) == 2


def test_your_own_pool_without_live_connections_works_on_a_second_loop(server: Any) -> None:
    # A mock transport, or a pool that keeps no connection: nothing belongs to a loop.
    http = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))
    client = aigen.AsyncClient(
        provider=server.provider, base_url=server.base_url, api_key=API_KEY, http_client=http
    )

    async def one() -> int:
        return (await client.generate("a fox")).attempts

    assert asyncio.run(one()) == 1
    assert asyncio.run(one()) == 1
    asyncio.run(http.aclose())


def test_your_own_pool_on_a_second_loop_says_what_to_do(server: Any) -> None:
    http = httpx.AsyncClient()
    client = aigen.AsyncClient(
        provider=server.provider, base_url=server.base_url, api_key=API_KEY, http_client=http
    )

    async def one() -> None:
        await client.generate("a fox")

    asyncio.run(one())  # leaves a kept-alive connection that belongs to this loop
    with warnings.catch_warnings():
        # That connection's socket: its loop is gone, so nothing can close it cleanly.
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(aigen.ConfigurationError, match="another event loop"):
            asyncio.run(one())
        asyncio.run(http.aclose())
        gc.collect()


# -- what the review found -----------------------------------------------------------------


def test_a_retryable_error_read_from_a_2xx_body_is_retried(make_client: Any) -> None:
    """A gateway that wraps an upstream 503 in a 200: the provider says so, aigen retries."""
    from aigen.providers import HttpRequest, HttpResponse, ProviderAnswer

    from .images import png

    class WrappingGateway:
        name = "wrapping"
        default_model = "m"
        default_base_url = "https://gw.example.com"
        api_key_env_vars = ("WRAPPING_KEY",)
        takes_seed = False

        def build_request(self, request: Any, context: Any) -> HttpRequest:
            return HttpRequest("POST", f"{context.base_url}/v1/images", {}, b"{}")

        def parse_response(self, response: HttpResponse) -> ProviderAnswer:
            if response.content == b"upstream 503":
                raise aigen.ServerError("upstream overloaded", status_code=503, provider="gw")
            return ProviderAnswer(image_data=response.content)

        def parse_error(self, response: HttpResponse, context: Any) -> aigen.GenerationError:
            return aigen.GenerationError("unexpected")

    import respx

    with respx.mock() as router:
        route = router.post("https://gw.example.com/v1/images").mock(
            side_effect=[
                httpx.Response(200, content=b"upstream 503"),
                httpx.Response(200, content=png(8, 8)),
            ]
        )
        made = make_client(provider=WrappingGateway(), api_key="wrapping-key-123456")
        assert made.generate("x").attempts == 2
    assert route.call_count == 2


def test_inference_time_ends_when_the_answer_has_arrived(
    make_client: Any, server: Any, fake_time: FakeClock
) -> None:
    """Time the limiter's store takes after the answer is not the model's."""

    class SlowStore(aigen.MemoryStore):
        def change_rate(self, key: str, change: Any, default_rate: float) -> float:
            fake_time.advance(10.0)
            return super().change_rate(key, change, default_rate)

    made = connect(
        make_client, server, rate_limit=RateLimit(requests_per_minute=60, store=SlowStore())
    )
    response = made.generate("a fox")
    assert response.inference_time_ms < 1000
    assert response.total_time_ms >= 10_000


def test_the_breaker_reads_the_wall_clock_as_the_limiter_does(
    make_client: Any, server: Any, fake_time: FakeClock
) -> None:
    """A store shared between hosts compares their times: both are Unix times."""
    seen: list[float] = []

    class Watching(aigen.MemoryStore):
        def admit(self, key: str, now: float, reset_timeout: float) -> Any:
            seen.append(now)
            return super().admit(key, now, reset_timeout)

    class OffsetClock(FakeClock):
        def monotonic(self) -> float:
            return self.now - 1_000_000.0  # seconds since boot, say

    clock = OffsetClock()
    made = connect(make_client, server, circuit_breaker=CircuitBreaker(store=Watching()))
    use_clock(made.target, clock)
    made.generate("a fox")
    assert seen == [clock.time()]


def test_two_event_loops_at_once_each_get_their_own_pool(server: Any) -> None:
    import threading

    client = aigen.AsyncClient(
        provider=server.provider, base_url=server.base_url, api_key=API_KEY, max_concurrency=2
    )
    results: list[object] = []

    def loop() -> None:
        async def calls() -> list[int]:
            done = await asyncio.gather(*(client.generate(f"p{i}") for i in range(4)))
            return [r.attempts for r in done]

        try:
            results.append(asyncio.run(calls()))
        except Exception as error:  # a failure is what the test looks for
            results.append(error)

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [[1, 1, 1, 1], [1, 1, 1, 1]]
    assert len(server.requests) == 8


def test_a_streamed_step_with_trickled_headers_ends_at_the_deadline(
    make_client: Any, server: Any
) -> None:
    from aigen.providers import HttpRequest, NextChunk, ProviderAnswer, Stream

    class Streaming:
        """Streams the fake's own generation answer (its body is beside the point here)."""

        name = "streaming"
        default_model = "gemini-2.5-flash-image"
        default_base_url = server.base_url
        api_key_env_vars = ("STREAMING_KEY",)
        takes_seed = False

        def exchange(self, request: Any, context: Any) -> Any:
            if server.provider == "gemini":
                url = f"{context.base_url}/v1beta/models/{context.model}:generateContent"
                body = b'{"contents": [{"role": "user", "parts": [{"text": "x"}]}]}'
            else:
                url = f"{context.base_url}/v1/images/generations"
                body = b'{"model": "gpt-image-2", "prompt": "x"}'
            headers = {
                "x-goog-api-key": context.api_key,
                "authorization": f"Bearer {context.api_key}",
                "content-type": "application/json",
            }
            yield Stream(HttpRequest("POST", url, headers, body))
            while (yield NextChunk()):
                pass
            return ProviderAnswer(image_data=b"")

        def parse_error(self, response: Any, context: Any) -> aigen.GenerationError:
            return aigen.GenerationError(f"HTTP {response.status_code}")

    server.script(success(head_duration=6.0))
    made = make_client(
        provider=Streaming(),
        api_key=API_KEY,
        base_url=server.base_url,
        timeout=TINY_TIMEOUT,
        real_time=True,
        retry=RetryPolicy(deadline=1.0),
    )
    started = time.monotonic()
    with pytest.raises(aigen.APITimeoutError):
        made.generate("a fox")
    assert time.monotonic() - started < 2.5
