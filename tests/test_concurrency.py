"""`max_concurrency` and `generate_many` on both clients (SPEC: Protecting the quota and the app).

Concurrency is measured where it matters, at the server: the fakes of `aigen.testing`
count the requests they are answering at once (`peak_in_flight`). Each answer is late by
a fraction of a second, so calls that may overlap do. A call that must wait for a slot is
held by `Hold` (its request stays in flight until the test lets it go), so no test
depends on guessing how long something takes.

`generate_many` results are checked against a mocked endpoint (`kit`/`api`) that answers
each prompt its own way and slower for earlier items, so calls finish out of order.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pydantic
import pytest

import aigen
from aigen import ConfigurationError, GenerationRequest, RetryPolicy
from aigen._constants import DEFAULT_BATCH_CONCURRENCY
from aigen.testing import FakeServer, fake_server, success

from .conftest import FakeTime
from .images import png
from .kits import Hold, run_concurrently, run_on_loop

SLOW = 0.12  # how late each answer of the fake servers is, in seconds
TINY = png(8, 8)  # an image of our own: the fakes need not draw one per call
CALLS = 10

# Real-time tests that do not depend on the provider run once per client, each against a
# different provider's fake: both clients and both providers, at the cost of two runs.
REAL_TIME_RUNS = pytest.mark.parametrize(
    ("client_kind", "provider"), [("sync", "gemini"), ("async", "openai")]
)


@pytest.fixture(params=["gemini", "openai"])
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(provider: str) -> Iterator[FakeServer]:
    with fake_server(provider) as fake:
        fake.default = success(TINY, delay=SLOW)
        yield fake


@pytest.fixture
def hold(make_client: Any) -> Iterator[Hold]:
    held = Hold()
    yield held
    held.close()


def connect(make_client: Any, server: FakeServer, **kwargs: Any) -> Any:
    """A client in real time talking to `server`."""
    kwargs.setdefault("timeout", 3.0)
    return make_client(real_time=True, provider=server.provider, base_url=server.base_url, **kwargs)


def generate(client: Any) -> Any:
    return client.generate("x")


def is_uuid4(value: object) -> bool:
    return isinstance(value, str) and uuid.UUID(value).version == 4


# -- max_concurrency -----------------------------------------------------------------------


@REAL_TIME_RUNS
def test_max_concurrency_caps_calls_in_flight(
    make_client: Any, server: FakeServer, client_kind: str
) -> None:
    made = connect(make_client, server, max_concurrency=3)
    results = run_concurrently(made, [generate] * CALLS)
    assert all(isinstance(r, aigen.GenerationResponse) for r in results), results
    assert len(server.requests) == CALLS
    assert server.peak_in_flight == 3


@REAL_TIME_RUNS
def test_without_max_concurrency_nothing_is_held_back(
    make_client: Any, server: FakeServer, client_kind: str
) -> None:
    made = connect(make_client, server)
    results = run_concurrently(made, [generate] * CALLS)
    assert all(isinstance(r, aigen.GenerationResponse) for r in results), results
    assert server.peak_in_flight == CALLS


@REAL_TIME_RUNS
def test_max_concurrency_one_sends_one_at_a_time(
    make_client: Any, server: FakeServer, client_kind: str
) -> None:
    server.default = success(TINY, delay=0.05)
    made = connect(make_client, server, max_concurrency=1)
    results = run_concurrently(made, [generate] * 3)
    assert all(isinstance(r, aigen.GenerationResponse) for r in results), results
    assert server.peak_in_flight == 1


def test_a_call_that_gets_no_slot_before_its_deadline_times_out_unsent(
    make_client: Any, client_kind: str, provider: str, hold: Hold
) -> None:
    with fake_server(provider) as server:
        made = hold.client(
            make_client,
            client_kind,
            real_time=True,
            provider=server.provider,
            base_url=server.base_url,
            timeout=3.0,
            max_concurrency=1,
            retry=RetryPolicy(deadline=0.2),
        )
        client = made.target

        if client_kind == "sync":
            with ThreadPoolExecutor(1) as pool:
                holder = pool.submit(client.generate, "holds the only slot")
                assert hold.wait_held(1)
                started = time.monotonic()
                with pytest.raises(aigen.APITimeoutError) as caught:
                    client.generate("finds no slot")
                waited = time.monotonic() - started
                error = caught.value
                hold.release()
                holder.exception(timeout=5)
        else:

            async def scenario() -> tuple[aigen.APITimeoutError, float]:
                holder = asyncio.ensure_future(client.generate("holds the only slot"))
                assert await hold.await_held(1)
                started = time.monotonic()
                with pytest.raises(aigen.APITimeoutError) as caught:
                    await client.generate("finds no slot")
                waited = time.monotonic() - started
                hold.release()
                await asyncio.gather(holder, return_exceptions=True)
                return caught.value, waited

            error, waited = run_on_loop(made, scenario())

        assert 0.15 <= waited < 1.5  # it waited for its deadline, then gave up
        assert error.attempts == 0
        assert is_uuid4(error.generation_id)
        assert "max_concurrency" in str(error)
        assert "nothing was sent" in str(error)
        assert hold.held == 1
        sent = [request.body for request in server.requests]
        assert len(sent) == 1
        assert b"holds the only slot" in sent[0]


def test_a_call_waits_for_a_slot_within_its_deadline(
    make_client: Any, client_kind: str, provider: str, hold: Hold
) -> None:
    with fake_server(provider) as server:
        made = hold.client(
            make_client,
            client_kind,
            real_time=True,
            provider=server.provider,
            base_url=server.base_url,
            timeout=3.0,
            max_concurrency=1,
            retry=RetryPolicy(deadline=3.0),
        )

        def release_soon() -> None:
            assert hold.wait_held(1)
            time.sleep(0.1)
            hold.engaged = False
            hold.release()

        releaser = threading.Thread(target=release_soon)
        releaser.start()
        try:
            results = run_concurrently(made, [generate, generate])
        finally:
            releaser.join(5)
        assert all(isinstance(r, aigen.GenerationResponse) for r in results), results
        assert len(server.requests) == 2


def test_a_failed_call_gives_its_slot_back(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    # The deadline bounds the wait for a slot: a slot that leaked would raise, not hang.
    made = make_client(
        provider=kit.name, max_concurrency=1, retry=RetryPolicy(max_retries=0, deadline=1.0)
    )
    api.side_effect = [
        kit.server_error(503),
        kit.bad_request(),
        httpx.ConnectError("refused"),
        kit.success(),
    ]
    for error_class in (aigen.ServerError, aigen.BadRequestError, aigen.APIConnectionError):
        with pytest.raises(error_class):
            made.generate("x")
    assert made.generate("x").attempts == 1


@pytest.mark.parametrize("client_kind", ["async"])
def test_a_cancelled_call_gives_its_slot_back(
    make_client: Any, client_kind: str, provider: str, hold: Hold
) -> None:
    with fake_server(provider) as server:
        made = hold.client(
            make_client,
            client_kind,
            real_time=True,
            provider=server.provider,
            base_url=server.base_url,
            timeout=3.0,
            max_concurrency=1,
            retry=RetryPolicy(deadline=1.0),
        )
        client = made.target

        async def scenario() -> aigen.GenerationResponse:
            holder = asyncio.ensure_future(client.generate("cancelled"))
            assert await hold.await_held(1)
            holder.cancel()
            with pytest.raises(asyncio.CancelledError):
                await holder
            hold.engaged = False
            hold.release()
            return await client.generate("gets the slot")

        assert isinstance(run_on_loop(made, scenario()), aigen.GenerationResponse)


@pytest.mark.parametrize("value", [0, -1, -100])
def test_max_concurrency_below_one_is_refused(make_client: Any, value: int) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        make_client(max_concurrency=value)


def test_max_concurrency_none_means_no_limit(make_client: Any) -> None:
    made = make_client(max_concurrency=None)
    assert made.target._engine.settings.max_concurrency is None
    assert getattr(made.target, "_slots", None) is None  # no semaphore to wait on


# -- generate_many: results ----------------------------------------------------------------

ITEM = re.compile(rb"#(\d+)#")

# What each item's call ends with, in input order.
PLAN = ["ok", "blocked", "ok", "bad_request", "overloaded", "ok", "output_blocked", "ok"]


def prompts(count: int) -> list[str]:
    return [f"image #{n}#" for n in range(count)]


def item_of(request: httpx.Request) -> int:
    found = ITEM.search(request.content)
    assert found, request.content
    return int(found.group(1))


def planned_answer(kit: Any, plan: list[str], request: httpx.Request) -> httpx.Response:
    n = item_of(request)
    return {
        "ok": lambda: kit.success(request_id=f"answer-{n}"),
        "blocked": kit.prompt_blocked,
        "output_blocked": kit.output_blocked,
        "bad_request": kit.bad_request,
        "overloaded": lambda: kit.server_error(503),
    }[plan[n]]()


def answer_out_of_order(api: Any, kit: Any, client_kind: str, plan: list[str]) -> None:
    """Answer item n after (len(plan) - n) x 10 ms: the first items finish last."""

    def lateness(request: httpx.Request) -> float:
        return (len(plan) - item_of(request)) * 0.01

    if client_kind == "sync":

        def answer(request: httpx.Request) -> httpx.Response:
            time.sleep(lateness(request))
            return planned_answer(kit, plan, request)

        api.side_effect = answer
    else:

        async def answer_async(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(lateness(request))
            return planned_answer(kit, plan, request)

        api.side_effect = answer_async


def test_results_come_back_in_input_order_each_a_response_or_its_error(
    make_client: Any, kit: Any, api: Any, client_kind: str
) -> None:
    answer_out_of_order(api, kit, client_kind, PLAN)
    made = make_client(provider=kit.name)  # default retries: the 503 is retried, then given up
    results = made.generate_many(prompts(len(PLAN)), concurrency=len(PLAN))

    assert len(results) == len(PLAN)
    for n, (planned, result) in enumerate(zip(PLAN, results, strict=True)):
        if planned == "ok":
            assert isinstance(result, aigen.GenerationResponse), (n, result)
            assert result.request_id == f"answer-{n}"
        elif planned == "blocked":
            assert isinstance(result, aigen.ContentPolicyError), (n, result)
            assert result.stage == "prompt"
        elif planned == "output_blocked":
            assert isinstance(result, aigen.ContentPolicyError), (n, result)
            assert result.stage == "output"
        elif planned == "bad_request":
            assert type(result) is aigen.BadRequestError, (n, result)
            assert result.status_code == 400
            assert result.attempts == 1
        else:
            assert type(result) is aigen.ServerError, (n, result)
            assert result.status_code == 503
            assert result.attempts == 3  # retried to the end, then reported, not raised
        assert is_uuid4(result.generation_id), (n, result)
    assert len({result.generation_id for result in results}) == len(PLAN)
    # Every call was made once, the 503 three times: nothing lost, nothing repeated.
    assert api.call_count == len(PLAN) + 2


def test_the_error_of_an_item_matches_what_generate_raises(
    make_client: Any, kit: Any, api: Any
) -> None:
    api.side_effect = lambda request: kit.bad_request()
    made = make_client(provider=kit.name)
    (from_batch,) = made.generate_many(["x"])
    with pytest.raises(aigen.BadRequestError) as caught:
        made.generate("x")
    assert type(from_batch) is type(caught.value)
    assert str(from_batch) == str(caught.value)


def test_requests_and_prompts_can_be_mixed(make_client: Any, kit: Any, api: Any) -> None:
    api.side_effect = lambda request: kit.success()
    made = make_client(provider=kit.name)
    batch = [GenerationRequest(prompt="a fox", width=512, height=512), "a cat"]
    results = made.generate_many(batch)
    assert all(isinstance(r, aigen.GenerationResponse) for r in results)
    assert api.call_count == 2


def test_any_iterable_is_taken(make_client: Any, kit: Any, api: Any) -> None:
    api.side_effect = lambda request: kit.success()
    made = make_client(provider=kit.name)
    results = made.generate_many(f"image {n}" for n in range(3))
    assert len(results) == 3
    assert api.call_count == 3


def test_an_empty_batch_returns_an_empty_list(make_client: Any, kit: Any, api: Any) -> None:
    made = make_client(provider=kit.name)
    calls: list[tuple[int, int]] = []
    assert made.generate_many([], on_progress=lambda done, total: calls.append((done, total))) == []
    assert calls == []
    assert api.call_count == 0


# -- generate_many: validation before sending ----------------------------------------------


@pytest.mark.parametrize("bad_at", [0, 3, 5])
def test_every_request_is_validated_before_any_is_sent(
    make_client: Any, kit: Any, api: Any, bad_at: int
) -> None:
    api.side_effect = lambda request: kit.success()
    made = make_client(provider=kit.name)
    batch = prompts(6)
    batch[bad_at] = "   "
    with pytest.raises(pydantic.ValidationError, match="prompt is empty"):
        made.generate_many(batch)
    assert api.call_count == 0


def test_something_that_is_no_request_is_refused_before_any_is_sent(
    make_client: Any, kit: Any, api: Any
) -> None:
    api.side_effect = lambda request: kit.success()
    made = make_client(provider=kit.name)
    with pytest.raises(TypeError, match="int"):
        made.generate_many(["a fox", 42, "a cat"])  # type: ignore[list-item]
    assert api.call_count == 0


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_below_one_is_refused(
    make_client: Any, kit: Any, api: Any, concurrency: int
) -> None:
    made = make_client(provider=kit.name)
    with pytest.raises(ConfigurationError, match="concurrency"):
        made.generate_many(["a fox"], concurrency=concurrency)
    assert api.call_count == 0


# -- generate_many: progress ---------------------------------------------------------------


def test_progress_is_reported_once_per_call_on_the_calling_thread(
    make_client: Any, kit: Any, api: Any, client_kind: str
) -> None:
    plan = ["ok", "blocked", "ok", "overloaded", "ok"]
    answer_out_of_order(api, kit, client_kind, plan)
    made = make_client(provider=kit.name, max_retries=0)
    seen: list[tuple[int, int, threading.Thread]] = []
    results = made.generate_many(
        prompts(len(plan)),
        concurrency=3,
        on_progress=lambda done, total: seen.append((done, total, threading.current_thread())),
    )
    assert len(results) == len(plan)
    assert [(done, total) for done, total, _ in seen] == [(n, 5) for n in range(1, 6)]
    # Client: on the thread that called generate_many, never a worker; AsyncClient: on
    # the event loop's thread, which here is the calling one.
    assert {thread for _, _, thread in seen} == {threading.current_thread()}


def test_progress_counts_failures_too(make_client: Any, kit: Any, api: Any) -> None:
    api.side_effect = lambda request: kit.bad_request()
    made = make_client(provider=kit.name)
    seen: list[tuple[int, int]] = []
    made.generate_many(prompts(4), on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


@REAL_TIME_RUNS
def test_an_exception_in_on_progress_stops_the_batch_and_propagates(
    make_client: Any, server: FakeServer, client_kind: str
) -> None:
    server.default = success(TINY, delay=0.15)
    made = connect(make_client, server)
    seen: list[int] = []

    def stop(done: int, total: int) -> None:
        seen.append(done)
        raise KeyError("the caller's own bug")

    with pytest.raises(KeyError, match="the caller's own bug"):
        made.generate_many(prompts(12), concurrency=2, on_progress=stop)
    assert seen[0] == 1  # (an AsyncClient task that finished in the same instant reports too)
    # The calls not yet started when it raised were never sent: at most the two in flight
    # and the two that took their places before the batch stopped.
    assert len(server.requests) <= 4


# -- generate_many: concurrency, against the fake servers ----------------------------------


@REAL_TIME_RUNS
def test_generate_many_keeps_to_its_concurrency(
    make_client: Any, server: FakeServer, client_kind: str
) -> None:
    made = connect(make_client, server)
    results = made.generate_many(prompts(6), concurrency=3)
    assert all(isinstance(r, aigen.GenerationResponse) for r in results), results
    assert len(server.requests) == 6
    assert server.peak_in_flight == 3


@REAL_TIME_RUNS
def test_generate_many_runs_eight_at_a_time_by_default(
    make_client: Any, server: FakeServer, client_kind: str
) -> None:
    made = connect(make_client, server)
    results = made.generate_many(prompts(DEFAULT_BATCH_CONCURRENCY + 2))
    assert all(isinstance(r, aigen.GenerationResponse) for r in results), results
    assert server.peak_in_flight == DEFAULT_BATCH_CONCURRENCY


@REAL_TIME_RUNS
def test_generate_many_keeps_to_the_clients_max_concurrency(
    make_client: Any, server: FakeServer, client_kind: str
) -> None:
    made = connect(make_client, server, max_concurrency=2)
    results = made.generate_many(prompts(4), concurrency=8)
    assert all(isinstance(r, aigen.GenerationResponse) for r in results), results
    assert server.peak_in_flight == 2


@REAL_TIME_RUNS
def test_generate_many_in_real_time_keeps_the_input_order(
    make_client: Any, server: FakeServer, client_kind: str
) -> None:
    made = connect(make_client, server)
    batch = prompts(6)
    results = made.generate_many(batch, concurrency=6)
    assert all(isinstance(r, aigen.GenerationResponse) for r in results), results
    # The fake gives every answer its own request id: each result carries the id of the
    # answer to its own prompt.
    by_prompt = {
        ITEM.search(request.body).group(1): request.request_id  # type: ignore[union-attr]
        for request in server.requests
    }
    assert [r.request_id for r in results] == [by_prompt[str(n).encode()] for n in range(6)]
