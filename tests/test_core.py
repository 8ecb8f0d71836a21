"""The sans-IO engine driven by plain function calls: no client, no socket, no sleep.

A call's flow (aigen/_flow.py) is a generator of actions; tests/flows.py answers them
with canned replies, so each test here sees exactly what the flow asked for, in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aigen
from aigen._actions import Action, AskStore, Send, Sleep, TransportFailure
from aigen._config import resolve_settings
from aigen._constants import DEFAULT_INITIAL_DELAY, JITTER_FRACTION
from aigen._core import Engine
from aigen._flow import generation_flow
from aigen._http import HttpRequest, HttpResponse
from aigen._store import Admit, ChangeRate, Hold, Record, Reserve

from . import gemini_bodies as gb
from .conftest import FakeTime
from .flows import drive
from .images import png

PROVIDERS = ["gemini", "openai"]
JITTER = 0.5
# The first retry's wait without a server hint: the initial delay, jittered.
FIRST_BACKOFF = DEFAULT_INITIAL_DELAY * (1 + JITTER_FRACTION * JITTER)


def engine(fake: FakeTime, provider: str = "gemini", **settings: object) -> Engine:
    resolved = resolve_settings(
        provider=provider,
        api_key="key-0123456789",
        base_url=None,
        model=None,
        max_retries=None,
        retry=settings.pop("retry", None),  # type: ignore[arg-type]
        allow_insecure_http=False,
        **settings,  # type: ignore[arg-type]
    )
    return Engine(resolved, clock=fake, jitter=lambda: JITTER, pick_seed=lambda: 99)


def success(provider: str) -> HttpResponse:
    if provider == "gemini":
        return HttpResponse(200, {}, json.dumps(gb.image_answer()).encode())
    body = {"created": 1, "data": [{"b64_json": gb.b64(png(16, 16))}], "output_format": "png"}
    return HttpResponse(200, {}, json.dumps(body).encode())


def overloaded(provider: str) -> HttpResponse:
    body = (
        gb.overloaded()
        if provider == "gemini"
        else {"error": {"message": "The server is overloaded.", "type": "server_error"}}
    )
    return HttpResponse(503, {}, json.dumps(body).encode())


def rate_limited(provider: str, headers: dict[str, str]) -> HttpResponse:
    """A 429 whose body gives no wait of its own, so the headers' hint is the one."""
    body = (
        gb.rate_limited(delay=None)
        if provider == "gemini"
        else {
            "error": {
                "message": "Rate limit reached for requests.",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        }
    )
    return HttpResponse(429, headers, json.dumps(body).encode())


def replies(*answers: HttpResponse | BaseException) -> Callable[[HttpRequest], Any]:
    """An answer for each `Send` in turn."""
    queue: Iterator[HttpResponse | BaseException] = iter(answers)
    return lambda _request: next(queue)


def kinds(actions: list[Action]) -> list[str]:
    """Each action's name, and for `AskStore` the operation's."""
    return [
        f"AskStore({type(action.op).__name__})"
        if type(action) is AskStore
        else type(action).__name__
        for action in actions
    ]


# -- preparing a call ------------------------------------------------------------------


def test_a_call_is_prepared_before_anything_is_sent() -> None:
    call = engine(FakeTime()).start("A fox", {"width": 1280, "height": 720})
    request = call.http_request
    assert request is not None
    assert request.method == "POST"
    assert request.url.endswith("/v1beta/models/gemini-2.5-flash-image:generateContent")
    assert call.seed == 99
    assert call.attempts == 0
    call.next_attempt()
    assert call.attempts == 1


def test_the_flow_sends_the_prepared_request() -> None:
    call = engine(FakeTime()).start("A fox", {"width": 1280, "height": 720})
    flow = generation_flow(call)
    send = next(flow)
    assert type(send) is Send
    assert send.request is call.http_request
    assert send.time_left is None
    assert call.attempts == 1  # counted as it is sent
    flow.close()


def test_timing_runs_from_sending_to_the_last_byte() -> None:
    fake = FakeTime()
    call = engine(fake).start("A fox", {})

    def answer(_request: HttpRequest) -> HttpResponse:
        fake.advance(2.5)  # the model thinks, then the body arrives
        return success("gemini")

    result = drive(generation_flow(call), answer)
    assert result.inference_time_ms == pytest.approx(2500)
    assert result.total_time_ms == pytest.approx(2500)
    assert result.attempts == 1
    assert result.generation_id == call.generation_id


# -- the body reader -------------------------------------------------------------------


def test_the_size_cap_is_checked_on_the_declared_length_first() -> None:
    call = engine(FakeTime(), max_response_bytes=10).start("x", {})
    with pytest.raises(aigen.GenerationError, match="max_response_bytes") as caught:
        call.body_reader({"content-length": "11"})
    assert caught.value.generation_id == call.generation_id


def test_the_size_cap_is_checked_as_the_body_streams() -> None:
    reader = engine(FakeTime(), max_response_bytes=10).start("x", {}).body_reader({})
    reader.feed(b"12345")
    reader.feed(b"67890")
    with pytest.raises(aigen.GenerationError, match="larger than max_response_bytes"):
        reader.feed(b"1")


def test_the_size_cap_applies_on_the_whole_path() -> None:
    call = engine(FakeTime(), max_response_bytes=10).start("x", {})
    actions: list[Action] = []
    with pytest.raises(aigen.GenerationError, match="larger than max_response_bytes") as caught:
        drive(generation_flow(call), replies(success("gemini")), actions=actions)
    assert kinds(actions) == ["Send"]  # not an error worth sending again
    assert caught.value.generation_id == call.generation_id
    assert caught.value.attempts == 1


def test_a_body_still_arriving_at_the_deadline_is_cut() -> None:
    fake = FakeTime()
    call = engine(fake, retry=aigen.RetryPolicy(deadline=5)).start("x", {})
    reader = call.body_reader({})
    reader.feed(b"abc")
    fake.now += 6
    with pytest.raises(aigen.APITimeoutError, match="deadline"):
        reader.feed(b"def")


def test_a_body_that_has_fully_arrived_is_kept_past_the_deadline() -> None:
    fake = FakeTime()
    call = engine(fake, retry=aigen.RetryPolicy(deadline=5)).start("x", {})
    reader = call.body_reader({"content-length": "6"})
    reader.feed(b"abc")
    fake.now += 6
    reader.feed(b"def")
    assert reader.body() == b"abcdef"


# -- the flow is pure: exactly these actions, in this order ------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_first_try_success_is_one_send(provider: str) -> None:
    call = engine(FakeTime(), provider).start("A fox", {})
    actions: list[Action] = []
    result = drive(generation_flow(call), replies(success(provider)), actions=actions)
    assert kinds(actions) == ["Send"]
    assert isinstance(result, aigen.GenerationResponse)
    assert result.provider == provider
    assert result.attempts == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_rate_limited_call_reserves_a_slot_then_raises_the_rate(provider: str) -> None:
    fake = FakeTime()
    made = engine(fake, provider, rate_limit=aigen.RateLimit(requests_per_minute=60))
    assert made.limiter is not None
    actions: list[Action] = []
    drive(generation_flow(made.start("A fox", {})), replies(success(provider)), actions=actions)
    assert kinds(actions) == ["AskStore(Reserve)", "Send", "AskStore(ChangeRate)"]
    reserve, _, change = actions
    assert type(reserve) is AskStore
    assert type(change) is AskStore
    assert reserve.store is change.store is made.limiter.store
    assert isinstance(reserve.op, Reserve)
    assert reserve.op.now == fake.now
    assert isinstance(change.op, ChangeRate)
    assert change.op.change.step > 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_circuit_breaker_admits_the_call_then_hears_how_it_went(provider: str) -> None:
    made = engine(FakeTime(), provider, circuit_breaker=aigen.CircuitBreaker())
    assert made.breaker is not None
    actions: list[Action] = []
    drive(generation_flow(made.start("A fox", {})), replies(success(provider)), actions=actions)
    assert kinds(actions) == ["AskStore(Admit)", "Send", "AskStore(Record)"]
    admit, _, record = actions
    assert type(admit) is AskStore
    assert isinstance(admit.op, Admit)
    assert type(record) is AskStore
    assert isinstance(record.op, Record)
    assert record.op.outcome == "success"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_503_then_success_backs_off_between_two_sends(provider: str) -> None:
    call = engine(FakeTime(), provider).start("A fox", {})
    actions: list[Action] = []
    answers = replies(overloaded(provider), success(provider))
    result = drive(generation_flow(call), answers, actions=actions)
    assert actions[1:2] == [Sleep(FIRST_BACKOFF)]
    assert kinds(actions) == ["Send", "Sleep", "Send"]
    assert result.attempts == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_429_waits_as_long_as_retry_after_says(provider: str) -> None:
    call = engine(FakeTime(), provider).start("A fox", {})
    actions: list[Action] = []
    answers = replies(rate_limited(provider, {"retry-after": "7"}), success(provider))
    result = drive(generation_flow(call), answers, actions=actions)
    assert kinds(actions) == ["Send", "Sleep", "Send"]
    assert actions[1] == Sleep(7.0)
    assert result.attempts == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_429_under_a_rate_limit_holds_the_limiter_and_halves_the_rate(provider: str) -> None:
    fake = FakeTime()
    start = fake.now
    made = engine(fake, provider, rate_limit=aigen.RateLimit(requests_per_minute=60, burst=5))
    actions: list[Action] = []
    answers = replies(rate_limited(provider, {"retry-after": "7"}), success(provider))
    drive(generation_flow(made.start("A fox", {})), answers, actions=actions, sleep=fake.sleep)
    assert kinds(actions) == [
        "AskStore(Reserve)",
        "Send",
        "AskStore(Hold)",
        "AskStore(ChangeRate)",
        "Sleep",
        "AskStore(Reserve)",
        "Send",
        "AskStore(ChangeRate)",
    ]
    hold, halve = actions[2], actions[3]
    assert type(hold) is AskStore
    assert isinstance(hold.op, Hold)
    assert hold.op.until == start + 7
    assert type(halve) is AskStore
    assert isinstance(halve.op, ChangeRate)
    assert halve.op.change.factor == 0.5
    assert actions[4] == Sleep(7.0)
    assert fake.sleeps == [7.0]  # the hold ends as the retry's wait does: no second wait


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_timeout_thrown_in_becomes_api_timeout_error_once_retries_run_out(
    provider: str,
) -> None:
    call = engine(FakeTime(), provider).start("A fox", {})
    cause = TimeoutError("read timed out")
    actions: list[Action] = []
    answers = replies(*[TransportFailure("timeout", cause)] * 3)
    with pytest.raises(aigen.APITimeoutError, match="did not answer in time") as caught:
        drive(generation_flow(call), answers, actions=actions)
    assert kinds(actions) == ["Send", "Sleep", "Send", "Sleep", "Send"]
    assert actions[1] == Sleep(FIRST_BACKOFF)
    assert actions[3] == Sleep(2 * FIRST_BACKOFF)
    assert caught.value.attempts == 3
    assert caught.value.generation_id == call.generation_id
    assert caught.value.__cause__ is cause


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_same_answers_on_the_same_clock_give_the_same_actions(provider: str) -> None:
    def run() -> tuple[list[object], dict[str, Any]]:
        fake = FakeTime()
        made = engine(
            fake,
            provider,
            rate_limit=aigen.RateLimit(requests_per_minute=60, burst=2),
            circuit_breaker=aigen.CircuitBreaker(),
        )
        answers = replies(
            overloaded(provider),
            rate_limited(provider, {"retry-after": "3"}),
            success(provider),
        )
        actions: list[Action] = []
        result = drive(
            generation_flow(made.start("A fox", {})), answers, actions=actions, sleep=fake.sleep
        )
        return [comparable(action) for action in actions], result.model_dump(
            exclude={"generation_id"}
        )

    first, second = run(), run()
    assert first == second
    assert len(first[0]) > 10  # admit, reserves, holds, rate changes, sleeps, sends, record


def comparable(action: Action) -> object:
    """An action as plain data: without the call's own body reader or store object."""
    if type(action) is Send:
        return ("Send", action.request, action.time_left)
    if type(action) is AskStore:
        return ("AskStore", type(action.store).__name__, action.op)
    return action
