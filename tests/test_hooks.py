"""Hooks (SPEC: Seeing what it does): typed events for each attempt, retry and outcome.

Every test runs for each provider x both clients (`kit`, `api`, `make_client`), on the
fake clock: a hook sees an `AttemptEvent` before each attempt, a `RetryEvent` before each
wait, and a `ResponseEvent` or an `ErrorEvent` as the call ends. A hook that raises is
logged and never breaks the call; `AsyncClient` awaits an `async` hook, `Client` refuses
one at construction.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import aigen
from aigen import AttemptEvent, ErrorEvent, Hooks, ResponseEvent, RetryEvent

from .conftest import API_KEY, FakeTime


def recording() -> tuple[list[object], Hooks]:
    seen: list[object] = []
    return seen, Hooks(
        on_attempt=seen.append,
        on_retry=seen.append,
        on_response=seen.append,
        on_error=seen.append,
    )


def test_each_attempt_retry_and_the_response_reach_the_hooks(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(side_effect=[kit.server_error(503), kit.success()])
    seen, hooks = recording()
    made = make_client(provider=kit.name, hooks=hooks)
    response = made.generate("a fox")
    assert [type(event) for event in seen] == [
        AttemptEvent,
        RetryEvent,
        AttemptEvent,
        ResponseEvent,
    ]
    first, retry, second, done = seen
    assert isinstance(first, AttemptEvent)
    assert isinstance(second, AttemptEvent)
    assert (first.attempt, second.attempt) == (1, 2)
    assert first.provider == kit.name
    assert first.model == response.model
    assert first.method == "POST"
    assert first.url.startswith("https://")
    assert isinstance(retry, RetryEvent)
    assert retry.attempt == 1
    assert retry.wait == fake_time.sleeps[0]
    assert isinstance(retry.error, aigen.ServerError)
    assert not retry.server_hint
    assert isinstance(done, ResponseEvent)
    assert done.response is response
    assert {event.generation_id for event in seen} == {response.generation_id}  # type: ignore[attr-defined]
    assert API_KEY not in repr(seen)


def test_a_call_that_fails_for_good_reaches_on_error(make_client: Any, kit: Any, api: Any) -> None:
    api.mock(return_value=kit.bad_request())
    seen, hooks = recording()
    made = make_client(provider=kit.name, hooks=hooks)
    with pytest.raises(aigen.BadRequestError) as caught:
        made.generate("a fox")
    assert [type(event) for event in seen] == [AttemptEvent, ErrorEvent]
    ended = seen[-1]
    assert isinstance(ended, ErrorEvent)
    assert ended.error is caught.value
    assert ended.generation_id == caught.value.generation_id


def test_a_call_refused_before_sending_reaches_on_error_only(
    make_client: Any, kit: Any, api: Any
) -> None:
    api.mock(return_value=kit.server_error(503))
    seen, hooks = recording()
    made = make_client(
        provider=kit.name,
        hooks=hooks,
        max_retries=0,
        circuit_breaker=aigen.CircuitBreaker(failure_threshold=1, reset_timeout=60),
    )
    with pytest.raises(aigen.ServerError):
        made.generate("opens the circuit")
    seen.clear()
    with pytest.raises(aigen.CircuitOpenError):
        made.generate("refused")
    assert [type(event) for event in seen] == [ErrorEvent]


def test_a_hook_that_raises_is_logged_and_the_call_goes_on(
    make_client: Any, kit: Any, api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.mock(return_value=kit.success())

    def broken(event: object) -> None:
        raise ValueError("the hook's own bug")

    made = make_client(provider=kit.name, hooks=Hooks(on_attempt=broken, on_response=broken))
    with caplog.at_level(logging.WARNING, logger="aigen"):
        response = made.generate("a fox")
    assert response.attempts == 1
    warnings = [r for r in caplog.records if "a hook for" in r.getMessage()]
    assert [r.getMessage().split(" raised")[0].rsplit(" ", 1)[-1] for r in warnings] == [
        "AttemptEvent",
        "ResponseEvent",
    ]
    assert all(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in warnings)
    assert all(getattr(r, "generation_id", None) == response.generation_id for r in warnings)


def test_an_async_client_awaits_async_hooks(kit: Any, api: Any) -> None:
    api.mock(side_effect=[kit.server_error(503), kit.success()])
    seen: list[str] = []

    async def on_retry(event: RetryEvent) -> None:
        await asyncio.sleep(0)
        seen.append(f"retry {event.attempt}")

    def on_response(event: ResponseEvent) -> None:  # a plain one beside it
        seen.append("response")

    async def scenario() -> None:
        async with aigen.AsyncClient(
            provider=kit.name,
            api_key=API_KEY,
            retry=aigen.RetryPolicy(initial_delay=0.01),
            hooks=Hooks(on_retry=on_retry, on_response=on_response),
        ) as client:
            await client.generate("a fox")

    asyncio.run(scenario())
    assert seen == ["retry 1", "response"]


def test_a_sync_client_refuses_an_async_hook_before_any_call(kit: Any) -> None:
    async def on_retry(event: RetryEvent) -> None:
        pass

    with pytest.raises(aigen.ConfigurationError, match=r"on_retry.*async.*AsyncClient"):
        aigen.Client(provider=kit.name, api_key=API_KEY, hooks=Hooks(on_retry=on_retry))


@pytest.mark.parametrize("hooks", ["on_retry", 3, {"on_retry": print}])
def test_hooks_must_be_a_hooks(make_client: Any, kit: Any, hooks: object) -> None:
    with pytest.raises(aigen.ConfigurationError, match=r"aigen\.Hooks"):
        make_client(provider=kit.name, hooks=hooks)


def test_a_hook_must_be_callable() -> None:
    with pytest.raises(aigen.ConfigurationError, match=r"on_error=.*callable"):
        Hooks(on_error="log it")  # type: ignore[arg-type]
