"""What is retried, how long aigen waits, and what it raises when it stops (SPEC: Retries).

Every test runs for each provider x both clients: `kit` phrases each answer the way its
provider does, `api` is the mocked endpoint. Time is fake: sleeps are recorded in
`fake_time.sleeps` and take no real time. The few cases that are about Gemini's own
wire format are marked `gemini_only`, with the reason; Gemini's body hints (`RetryInfo`,
"Please retry in Ns") are in test_retry_hints.py.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest

import aigen
from aigen import RetryPolicy

from . import gemini_bodies as gb
from .conftest import FakeTime

JITTER = 0.25  # SPEC/RetryPolicy: up to 25% added to each backoff wait
# The fake clock starts near 1.75e9 s, where a float resolves about 2.4e-7 s.
CLOCK_SLACK = 1e-5

# These answers exist only in Gemini's wire format (WIRE.md A.4, B.2); OpenAI has no
# counterpart, so a test marked with this runs for Gemini alone.
gemini_only = pytest.mark.parametrize("kit", ["gemini"], indirect=True)

# What a proxy or load balancer in front of any provider answers: not the provider's JSON.
PROXY_PAGES = {408: "<html>408 Request Timeout</html>", 502: "<html>502 Bad Gateway</html>"}


def client(make_client: Any, kit: Any, **kwargs: Any) -> Any:
    return make_client(provider=kit.name, **kwargs)


def failure(
    kit: Any,
    status: int,
    *,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A retryable failure, without a hint, as the server (or a proxy in front) sends it."""
    all_headers = {**({"x-request-id": request_id} if request_id else {}), **(headers or {})}
    if status == 429:
        return kit.rate_limited(headers=all_headers)
    if status in PROXY_PAGES:
        return httpx.Response(status, text=PROXY_PAGES[status], headers=all_headers)
    return kit.server_error(status, headers=all_headers)


def pin_jitter(made: Any, value: float) -> None:
    """Make the jitter draw `value` (in [0, 1)) every time, for exact bounds."""
    made.target._engine.jitter = lambda: value


def assert_backoff(
    sleeps: list[float], count: int, *, initial: float = 1.0, max_delay: float = 30.0
) -> None:
    """`count` waits of initial * 2**n, each with up to 25% jitter, capped at max_delay."""
    assert len(sleeps) == count, sleeps
    for n, slept in enumerate(sleeps):
        base = initial * 2**n
        low, high = min(base, max_delay), min(base * (1 + JITTER), max_delay)
        assert low <= slept <= high, f"wait {n + 1} was {slept}, expected {low}..{high}"


def assert_obeys(slept: float, hint: float) -> None:
    """A hint is obeyed: never less, and not much more."""
    assert hint <= slept <= hint * (1 + JITTER) + 1e-9, f"slept {slept} on a hint of {hint}"


def is_uuid4(value: object) -> bool:
    return isinstance(value, str) and uuid.UUID(value).version == 4


RETRYABLE = [
    (408, aigen.APIError),
    (429, aigen.RateLimitError),
    (500, aigen.ServerError),
    (502, aigen.ServerError),
    (503, aigen.ServerError),
    (504, aigen.ServerError),
]


# -- what is retried -------------------------------------------------------------------


@pytest.mark.parametrize("status", [status for status, _ in RETRYABLE])
def test_retryable_status_is_retried_until_success(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime, status: int
) -> None:
    api.side_effect = [failure(kit, status), failure(kit, status), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 3
    assert api.call_count == 3
    assert_backoff(fake_time.sleeps, 2)


def test_attempts_counts_a_single_retry(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [failure(kit, 503), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 2
    assert api.call_count == 2
    assert_backoff(fake_time.sleeps, 1)


@pytest.mark.parametrize(("status", "error_class"), RETRYABLE)
def test_exhausted_retries_raise_the_last_error(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    status: int,
    error_class: type[aigen.APIError],
) -> None:
    api.side_effect = [failure(kit, status, request_id=f"req-{n}") for n in (1, 2, 3)]
    with pytest.raises(aigen.APIError) as caught:
        client(make_client, kit).generate("x")
    error = caught.value
    assert type(error) is error_class
    assert error.status_code == status
    assert error.request_id == "req-3"  # the last one, not the first
    assert error.attempts == 3
    assert is_uuid4(error.generation_id)
    assert api.call_count == 3
    assert_backoff(fake_time.sleeps, 2)


def test_errors_of_different_calls_have_different_generation_ids(
    make_client: Any, kit: Any, api: Any
) -> None:
    api.mock(return_value=failure(kit, 503))
    made = client(make_client, kit, max_retries=0)
    ids = set()
    for _ in range(3):
        with pytest.raises(aigen.ServerError) as caught:
            made.generate("x")
        ids.add(caught.value.generation_id)
    assert len(ids) == 3


# -- backoff without a hint ------------------------------------------------------------


def test_backoff_waits_1_2_4_seconds_with_jitter(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(return_value=failure(kit, 503))
    with pytest.raises(aigen.ServerError) as caught:
        client(make_client, kit, max_retries=3).generate("x")
    assert caught.value.attempts == 4
    assert_backoff(fake_time.sleeps, 3)


@pytest.mark.parametrize(
    ("draw", "expected"),
    [
        pytest.param(0.0, [1.0, 2.0, 4.0], id="no jitter"),
        pytest.param(0.5, [1.125, 2.25, 4.5], id="half"),
        pytest.param(0.999999, [1.25, 2.5, 5.0], id="most jitter"),
    ],
)
def test_jitter_adds_at_most_a_quarter(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    draw: float,
    expected: list[float],
) -> None:
    api.mock(return_value=failure(kit, 503))
    made = client(make_client, kit, max_retries=3)
    pin_jitter(made, draw)
    with pytest.raises(aigen.ServerError):
        made.generate("x")
    assert fake_time.sleeps == [pytest.approx(e, abs=1e-5) for e in expected]


def test_backoff_has_jitter(make_client: Any, kit: Any, api: Any, fake_time: FakeTime) -> None:
    # Clients that failed together must not retry in lockstep.
    made = client(make_client, kit)
    for _ in range(8):
        api.side_effect = [failure(kit, 503), kit.success()]
        made.generate("x")
    assert len(fake_time.sleeps) == 8
    assert all(1.0 <= s <= 1.25 for s in fake_time.sleeps)
    assert len(set(fake_time.sleeps)) > 1


def test_backoff_is_capped_by_max_delay(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(return_value=failure(kit, 503))
    made = client(make_client, kit, retry=RetryPolicy(max_retries=5, max_delay=3.0))
    with pytest.raises(aigen.ServerError) as caught:
        made.generate("x")
    assert caught.value.attempts == 6
    assert_backoff(fake_time.sleeps, 5, max_delay=3.0)
    assert fake_time.sleeps[2:] == [3.0, 3.0, 3.0]


def test_max_delay_caps_jitter_too(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(return_value=failure(kit, 503))
    made = client(make_client, kit, retry=RetryPolicy(max_retries=2, max_delay=2.2))
    pin_jitter(made, 0.999999)
    with pytest.raises(aigen.ServerError):
        made.generate("x")
    assert fake_time.sleeps == [pytest.approx(1.25, abs=1e-5), 2.2]


def test_initial_delay_is_respected(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(return_value=failure(kit, 500))
    made = client(make_client, kit, retry=RetryPolicy(max_retries=3, initial_delay=0.5))
    with pytest.raises(aigen.ServerError):
        made.generate("x")
    assert_backoff(fake_time.sleeps, 3, initial=0.5)


@pytest.mark.parametrize(
    "keywords",
    [
        pytest.param({"max_retries": 0}, id="max_retries=0"),
        pytest.param({"retry": RetryPolicy(max_retries=0)}, id="RetryPolicy(max_retries=0)"),
    ],
)
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda kit: failure(kit, 503), id="503"),
        pytest.param(lambda kit: kit.rate_limited(1), id="429"),
        pytest.param(lambda kit: httpx.ConnectError("boom"), id="connect-error"),
        pytest.param(lambda kit: httpx.ReadTimeout("slow"), id="read-timeout"),
    ],
)
def test_no_retries_means_one_attempt(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    keywords: dict[str, Any],
    answer: Callable[[Any], Any],
) -> None:
    api.side_effect = [answer(kit), kit.success()]
    with pytest.raises(aigen.GenerationError) as caught:
        client(make_client, kit, **keywords).generate("x")
    assert caught.value.attempts == 1
    assert api.call_count == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize(("max_retries", "attempts"), [(1, 2), (4, 5)])
def test_retry_policy_sets_the_number_of_attempts(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    max_retries: int,
    attempts: int,
) -> None:
    api.mock(return_value=failure(kit, 503))
    with pytest.raises(aigen.ServerError) as caught:
        client(make_client, kit, retry=RetryPolicy(max_retries=max_retries)).generate("x")
    assert caught.value.attempts == attempts
    assert api.call_count == attempts
    assert_backoff(fake_time.sleeps, attempts - 1)


def test_max_retries_keyword_sets_the_number_of_attempts(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(return_value=failure(kit, 503))
    with pytest.raises(aigen.ServerError) as caught:
        client(make_client, kit, max_retries=1).generate("x")
    assert caught.value.attempts == 2
    assert api.call_count == 2


def test_max_retries_and_retry_together_is_a_configuration_error(
    make_client: Any, kit: Any, api: Any
) -> None:
    with pytest.raises(aigen.ConfigurationError, match="max_retries"):
        client(make_client, kit, max_retries=1, retry=RetryPolicy(max_retries=3))
    assert api.call_count == 0


# -- server hints ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "hint"),
    [
        pytest.param({"Retry-After": "7"}, 7.0, id="Retry-After seconds"),
        pytest.param({"Retry-After": "2.5"}, 2.5, id="Retry-After fraction"),
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="retry-after-ms"),
        pytest.param({"Retry-After": "0.2"}, 0.2, id="shorter than backoff"),
    ],
)
def test_header_hint_on_a_429_is_obeyed(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    headers: dict[str, str],
    hint: float,
) -> None:
    api.side_effect = [kit.rate_limited(headers=headers), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], hint)


def test_retry_after_http_date_is_obeyed(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    date = formatdate(fake_time.now + 20, usegmt=True)
    api.side_effect = [kit.rate_limited(headers={"Retry-After": date}), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], 20.0)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_header_hint_on_a_5xx_is_obeyed(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime, status: int
) -> None:
    api.side_effect = [failure(kit, status, headers={"Retry-After": "5"}), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], 5.0)


@pytest.mark.parametrize(
    ("own_hint", "headers", "hint"),
    [
        pytest.param(5, {"Retry-After": "8"}, 8.0, id="Retry-After longer"),
        pytest.param(9, {"Retry-After": "3"}, 9.0, id="providers own hint longer"),
    ],
)
def test_when_the_provider_and_retry_after_both_hint_the_longer_wins(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    own_hint: float,
    headers: dict[str, str],
    hint: float,
) -> None:
    # Gemini's own hint is RetryInfo in the body, OpenAI's is retry-after-ms; Gemini's
    # body against retry-after-ms is in test_retry_hints.py.
    api.side_effect = [kit.rate_limited(own_hint, headers=headers), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], hint)


def test_hint_is_not_capped_by_max_delay(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(10), kit.success()]
    result = client(make_client, kit, retry=RetryPolicy(max_delay=2.0)).generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], 10.0)


def test_hint_up_to_max_retry_after_is_slept_on(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(60), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], 60.0)


def test_hints_and_backoff_mix_in_one_call(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [failure(kit, 503), kit.rate_limited(7), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 3
    assert len(fake_time.sleeps) == 2
    assert 1.0 <= fake_time.sleeps[0] <= 1.25
    assert_obeys(fake_time.sleeps[1], 7.0)


# -- hints too long to wait for --------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "hint"),
    [
        pytest.param(lambda kit: kit.rate_limited(120), 120.0, id="providers own hint"),
        pytest.param(
            lambda kit: kit.rate_limited(headers={"Retry-After": "61"}), 61.0, id="Retry-After"
        ),
        pytest.param(
            lambda kit: kit.rate_limited(headers={"retry-after-ms": "90000"}),
            90.0,
            id="retry-after-ms",
        ),
        pytest.param(
            lambda kit: kit.rate_limited(headers={"Retry-After": "86400"}),
            86400.0,
            id="a whole day",
        ),
    ],
)
def test_hint_above_max_retry_after_raises_at_once(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    response: Callable[[Any], httpx.Response],
    hint: float,
) -> None:
    api.side_effect = [response(kit), kit.success()]
    with pytest.raises(aigen.RateLimitError) as caught:
        client(make_client, kit).generate("x")
    error = caught.value
    assert type(error) is aigen.RateLimitError
    assert error.retry_after == pytest.approx(hint)
    assert error.attempts == 1
    assert is_uuid4(error.generation_id)
    assert api.call_count == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize(("delay", "retried"), [(5.0, True), (5.5, False), (6.0, False)])
def test_custom_max_retry_after(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime, delay: float, retried: bool
) -> None:
    api.side_effect = [kit.rate_limited(delay), kit.success()]
    made = client(make_client, kit, retry=RetryPolicy(max_retry_after=5.0))
    if retried:
        assert made.generate("x").attempts == 2
        assert fake_time.sleeps == [5.0]
    else:
        with pytest.raises(aigen.RateLimitError) as caught:
            made.generate("x")
        assert caught.value.retry_after == pytest.approx(delay)
        assert caught.value.attempts == 1
        assert fake_time.sleeps == []


def test_too_long_hint_on_a_later_attempt_raises_then(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [failure(kit, 503), kit.rate_limited(300), kit.success()]
    with pytest.raises(aigen.RateLimitError) as caught:
        client(make_client, kit).generate("x")
    assert caught.value.retry_after == 300.0
    assert caught.value.attempts == 2
    assert_backoff(fake_time.sleeps, 1)


def test_too_long_header_hint_on_a_503_is_not_slept_on(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [failure(kit, 503, headers={"Retry-After": "3600"}), kit.success()]
    with pytest.raises(aigen.ServerError) as caught:
        client(make_client, kit).generate("x")
    assert caught.value.retry_after == 3600.0
    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


def test_exhausted_429s_carry_the_last_hint(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(3), kit.rate_limited(5), kit.rate_limited(7)]
    with pytest.raises(aigen.RateLimitError) as caught:
        client(make_client, kit).generate("x")
    error = caught.value
    assert type(error) is aigen.RateLimitError
    assert error.retry_after == 7.0
    assert error.attempts == 3
    assert is_uuid4(error.generation_id)
    assert len(fake_time.sleeps) == 2
    assert_obeys(fake_time.sleeps[0], 3.0)
    assert_obeys(fake_time.sleeps[1], 5.0)


def test_exhausted_429s_carry_the_last_header_hint(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(headers={"Retry-After": str(n)}) for n in (2, 4, 6)]
    with pytest.raises(aigen.RateLimitError) as caught:
        client(make_client, kit).generate("x")
    assert caught.value.retry_after == 6.0
    assert caught.value.attempts == 3


# -- the deadline ----------------------------------------------------------------------


def test_deadline_stops_backoff_early(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    start = fake_time.now
    api.mock(return_value=failure(kit, 503))
    with pytest.raises(aigen.ServerError) as caught:
        client(make_client, kit, retry=RetryPolicy(max_retries=5, deadline=2.5)).generate("x")
    # t=0 fail, sleep 1..1.25, fail; the next wait (2..2.5) would end past 2.5 s.
    assert caught.value.attempts == 2
    assert is_uuid4(caught.value.generation_id)
    assert api.call_count == 2
    assert_backoff(fake_time.sleeps, 1)
    assert fake_time.now - start <= 2.5 + CLOCK_SLACK


@pytest.mark.parametrize("deadline", [0.5, 1.0, 2.0, 3.0, 3.8, 7.5, 20.0])
def test_no_sleep_ends_past_the_deadline(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime, deadline: float
) -> None:
    start = fake_time.now
    api.mock(return_value=failure(kit, 503))
    made = client(make_client, kit, retry=RetryPolicy(max_retries=10, deadline=deadline))
    with pytest.raises(aigen.ServerError) as caught:
        made.generate("x")
    elapsed = fake_time.now - start
    assert elapsed <= deadline + CLOCK_SLACK
    assert caught.value.attempts == len(fake_time.sleeps) + 1
    assert_backoff(fake_time.sleeps, len(fake_time.sleeps))
    # It stopped because the next wait (at most 2**n * 1.25) would not fit, not for lack
    # of retries.
    longest_next_wait = 2 ** len(fake_time.sleeps) * (1 + JITTER)
    assert elapsed + longest_next_wait > deadline


def test_deadline_shorter_than_the_first_wait_means_one_attempt(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(return_value=failure(kit, 503))
    with pytest.raises(aigen.ServerError) as caught:
        client(make_client, kit, retry=RetryPolicy(deadline=0.9)).generate("x")
    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


def test_time_spent_in_attempts_counts_against_the_deadline(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    def slow_failure(request: httpx.Request) -> httpx.Response:
        fake_time.now += 2.0  # the server took two seconds to say 503
        return failure(kit, 503)

    api.side_effect = slow_failure
    with pytest.raises(aigen.ServerError) as caught:
        client(make_client, kit, retry=RetryPolicy(deadline=2.5)).generate("x")
    # 2 s gone; even the shortest wait (1 s) would end at 3 s, past 2.5 s.
    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


def test_hint_past_the_deadline_raises_rate_limit_error_at_once(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(17), kit.success()]
    with pytest.raises(aigen.RateLimitError) as caught:
        client(make_client, kit, retry=RetryPolicy(deadline=10.0)).generate("x")
    error = caught.value
    assert type(error) is aigen.RateLimitError
    assert error.retry_after == 17.0
    assert error.attempts == 1
    assert is_uuid4(error.generation_id)
    assert api.call_count == 1
    assert fake_time.sleeps == []


def test_header_hint_past_the_deadline_raises_at_once(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(headers={"Retry-After": "30"}), kit.success()]
    with pytest.raises(aigen.RateLimitError) as caught:
        client(make_client, kit, retry=RetryPolicy(deadline=20.0)).generate("x")
    assert caught.value.retry_after == 30.0
    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


def test_hint_that_fits_once_but_not_twice(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.rate_limited(4), kit.rate_limited(4), kit.success()]
    with pytest.raises(aigen.RateLimitError) as caught:
        client(make_client, kit, retry=RetryPolicy(deadline=6.0)).generate("x")
    assert caught.value.retry_after == 4.0
    assert caught.value.attempts == 2
    assert fake_time.sleeps == [4.0]


def test_deadline_caps_each_attempts_timeout(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [failure(kit, 503), kit.success()]
    made = client(make_client, kit, timeout=120.0, retry=RetryPolicy(deadline=10.0))
    made.generate("x")
    first, second = (call.request.extensions["timeout"] for call in api.calls)
    assert all(0 < value <= 10.0 for value in first.values())
    left = 10.0 - fake_time.sleeps[0]
    assert all(0 < value <= left + CLOCK_SLACK for value in second.values())


def test_without_a_deadline_the_timeout_is_the_configured_one(
    make_client: Any, kit: Any, api: Any
) -> None:
    api.side_effect = [failure(kit, 503), kit.success()]
    client(make_client, kit, timeout=42.0).generate("x")
    for call in api.calls:
        assert call.request.extensions["timeout"]["read"] == 42.0


# -- never retried ---------------------------------------------------------------------


def assert_never_retried(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    response: httpx.Response,
    error_class: type[aigen.GenerationError],
    with_header_hint: bool,
) -> None:
    # A hint says when to come back, not that coming back will help.
    if with_header_hint:
        response.headers["Retry-After"] = "1"
    api.side_effect = [response, kit.success()]
    caplog.set_level(logging.INFO, logger="aigen")
    with pytest.raises(error_class) as caught:
        client(make_client, kit).generate("x")
    error = caught.value
    assert type(error) is error_class
    assert error.attempts == 1
    assert is_uuid4(error.generation_id)
    assert api.call_count == 1
    assert fake_time.sleeps == []
    assert retry_records(caplog) == []


NEVER_RETRIED = [
    pytest.param("prompt_blocked", aigen.ContentPolicyError, id="prompt-blocked"),
    pytest.param("output_blocked", aigen.ContentPolicyError, id="output-blocked"),
    pytest.param("no_image", aigen.NoImageError, id="no-image"),
    pytest.param("quota_exhausted", aigen.QuotaExceededError, id="quota-exhausted"),
    pytest.param("bad_request", aigen.BadRequestError, id="400"),
    pytest.param("bad_key", aigen.AuthenticationError, id="bad-key"),
    pytest.param("unauthenticated", aigen.AuthenticationError, id="401"),
    pytest.param("forbidden", aigen.AuthenticationError, id="403"),
    pytest.param("not_found", aigen.NotFoundError, id="404"),
]


@pytest.mark.parametrize("with_header_hint", [False, True], ids=["", "with-Retry-After"])
@pytest.mark.parametrize(("answer", "error_class"), NEVER_RETRIED)
def test_never_retried(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    answer: str,
    error_class: type[aigen.GenerationError],
    with_header_hint: bool,
) -> None:
    response = getattr(kit, answer)()
    assert_never_retried(
        make_client, kit, api, fake_time, caplog, response, error_class, with_header_hint
    )


# Gemini's own ways of saying "no image", "refused" and "out of quota" beyond what its kit
# says (a NO_IMAGE finish reason, a safety message in a 400, per-day and zero quotas in a
# QuotaFailure detail): Gemini wire formats with no OpenAI counterpart.
GEMINI_NEVER_RETRIED = [
    pytest.param(200, gb.text_only("", "NO_IMAGE"), aigen.NoImageError, id="200-NO_IMAGE"),
    pytest.param(
        400,
        gb.error(400, "INVALID_ARGUMENT", "The request was blocked by safety filters."),
        aigen.ContentPolicyError,
        id="400-safety",
    ),
    pytest.param(
        429,
        gb.rate_limited("17s", quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
        aigen.QuotaExceededError,
        id="429-daily-quota-with-RetryInfo",
    ),
    pytest.param(
        429, gb.rate_limited("3s", value="0"), aigen.QuotaExceededError, id="429-zero-quota"
    ),
]


@gemini_only
@pytest.mark.parametrize("with_header_hint", [False, True], ids=["", "with-Retry-After"])
@pytest.mark.parametrize(("status", "body", "error_class"), GEMINI_NEVER_RETRIED)
def test_gemini_answers_never_retried(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: dict[str, Any],
    error_class: type[aigen.GenerationError],
    with_header_hint: bool,
) -> None:
    response = httpx.Response(status, json=body)
    assert_never_retried(
        make_client, kit, api, fake_time, caplog, response, error_class, with_header_hint
    )


def test_quota_exceeded_keeps_its_hint_but_is_not_retried(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [kit.quota_exhausted(), kit.success()]
    with pytest.raises(aigen.QuotaExceededError) as caught:
        client(make_client, kit, retry=RetryPolicy(max_retries=5)).generate("x")
    assert isinstance(caught.value, aigen.RateLimitError)
    assert caught.value.retry_after == 30.0  # both kits' quota answers hint 30 s
    assert caught.value.attempts == 1
    assert api.call_count == 1
    assert fake_time.sleeps == []


# -- connection errors and timeouts ----------------------------------------------------


TRANSPORT_ERRORS = [
    pytest.param(lambda: httpx.ConnectError("boom"), aigen.APIConnectionError, id="ConnectError"),
    pytest.param(
        lambda: httpx.RemoteProtocolError("peer closed connection"),
        aigen.APIConnectionError,
        id="RemoteProtocolError",
    ),
    pytest.param(
        lambda: httpx.ReadError("connection reset"), aigen.APIConnectionError, id="ReadError"
    ),
    pytest.param(lambda: httpx.ReadTimeout("slow"), aigen.APITimeoutError, id="ReadTimeout"),
    pytest.param(lambda: httpx.ConnectTimeout("slow"), aigen.APITimeoutError, id="ConnectTimeout"),
    pytest.param(lambda: httpx.WriteTimeout("slow"), aigen.APITimeoutError, id="WriteTimeout"),
    pytest.param(lambda: httpx.PoolTimeout("slow"), aigen.APITimeoutError, id="PoolTimeout"),
]


@pytest.mark.parametrize(("make_exc", "error_class"), TRANSPORT_ERRORS)
def test_transport_errors_are_retried_then_raised_typed(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    make_exc: Callable[[], httpx.HTTPError],
    error_class: type[aigen.GenerationError],
) -> None:
    api.side_effect = [make_exc(), make_exc(), make_exc()]
    with pytest.raises(aigen.GenerationError) as caught:
        client(make_client, kit).generate("x")
    error = caught.value
    assert type(error) is error_class
    assert not isinstance(error, httpx.HTTPError)
    assert error.attempts == 3
    assert is_uuid4(error.generation_id)
    assert kit.name in str(error)
    assert api.call_count == 3
    assert_backoff(fake_time.sleeps, 2)


@pytest.mark.parametrize(("make_exc", "error_class"), TRANSPORT_ERRORS)
def test_transport_error_then_success(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    make_exc: Callable[[], httpx.HTTPError],
    error_class: type[aigen.GenerationError],
) -> None:
    api.side_effect = [make_exc(), kit.success()]
    result = client(make_client, kit).generate("x")
    assert result.attempts == 2
    assert_backoff(fake_time.sleeps, 1)


def test_the_last_failure_decides_the_error_type(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [httpx.ConnectError("boom"), failure(kit, 503), httpx.ReadTimeout("slow")]
    with pytest.raises(aigen.APITimeoutError) as caught:
        client(make_client, kit).generate("x")
    assert caught.value.attempts == 3
    assert_backoff(fake_time.sleeps, 2)


def test_a_non_retryable_answer_after_a_connection_error_ends_the_call(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.side_effect = [httpx.ConnectError("boom"), kit.prompt_blocked()]
    with pytest.raises(aigen.ContentPolicyError) as caught:
        client(make_client, kit).generate("x")
    assert caught.value.attempts == 2
    assert api.call_count == 2


# -- logging ---------------------------------------------------------------------------


def retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aigen" and r.levelno == logging.INFO]


def test_each_retry_logs_one_info_record(
    make_client: Any,
    kit: Any,
    api: Any,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api.side_effect = [failure(kit, 503), httpx.ConnectError("boom"), kit.success()]
    caplog.set_level(logging.INFO, logger="aigen")
    result = client(make_client, kit).generate("x")

    records = retry_records(caplog)
    assert len(records) == 2
    first, second = (r.getMessage() for r in records)
    for n, (text, wait) in enumerate(zip((first, second), fake_time.sleeps, strict=True), start=1):
        assert result.generation_id in text
        assert re.search(rf"\battempt {n}\b", text), text
        assert f"{wait:.2f}" in text, text
    assert "503" in first or "overloaded" in first
    assert "ConnectError" in second or "boom" in second


def test_retry_log_names_the_hint_it_waits_for(
    make_client: Any, kit: Any, api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.side_effect = [kit.rate_limited(17), kit.success()]
    caplog.set_level(logging.INFO, logger="aigen")
    result = client(make_client, kit).generate("x")
    (record,) = retry_records(caplog)
    text = record.getMessage()
    assert result.generation_id in text
    assert re.search(r"\battempt 1\b", text), text
    assert "17.00" in text
    assert "429" in text or "exceeded" in text.lower()


def test_retries_that_run_out_log_the_same_id_as_the_error(
    make_client: Any, kit: Any, api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.side_effect = [httpx.ReadTimeout("slow")] * 3
    caplog.set_level(logging.INFO, logger="aigen")
    with pytest.raises(aigen.APITimeoutError) as caught:
        client(make_client, kit).generate("x")
    generation_id = caught.value.generation_id
    assert is_uuid4(generation_id)
    records = retry_records(caplog)
    assert len(records) == 2  # a log per retry, none for the final failure
    assert all(str(generation_id) in r.getMessage() for r in records)


def test_no_retry_no_info_record(
    make_client: Any, kit: Any, api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.side_effect = [kit.success()]
    caplog.set_level(logging.INFO, logger="aigen")
    client(make_client, kit).generate("x")
    assert retry_records(caplog) == []
