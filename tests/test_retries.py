"""What is retried, how long aigen waits, and what it raises when it stops (SPEC: Retries).

Every test runs with `Client` and `AsyncClient` against respx-mocked Gemini, on fake
time: sleeps are recorded in `fake_time.sleeps` and take no real time.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import respx

import aigen
from aigen import RetryPolicy

from . import gemini_bodies as gb
from .conftest import FakeTime

BASE = "https://generativelanguage.googleapis.com"
JITTER = 0.25  # SPEC/RetryPolicy: up to 25% added to each backoff wait
# The fake clock starts near 1.75e9 s, where a float resolves about 2.4e-7 s.
CLOCK_SLACK = 1e-5


@pytest.fixture
def gemini() -> Iterator[Any]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router.post(gb.PATH)


def ok() -> httpx.Response:
    return httpx.Response(200, json=gb.image_answer())


def failure(status: int, *, request_id: str | None = None) -> httpx.Response:
    """A retryable failure as a server (or a proxy in front of it) sends it."""
    headers = {"x-request-id": request_id} if request_id else {}
    bodies: dict[int, Any] = {
        408: "<html>408 Request Timeout</html>",
        429: gb.error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
        500: gb.error(500, "INTERNAL", "An internal error has occurred."),
        502: "<html>502 Bad Gateway</html>",
        503: gb.overloaded(),
        504: gb.error(504, "DEADLINE_EXCEEDED", "The request timed out."),
    }
    body = bodies[status]
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def rate_limited(delay: str | None, **headers: str) -> httpx.Response:
    """A per-minute Gemini 429, with `RetryInfo` when `delay` is given."""
    return httpx.Response(429, json=gb.rate_limited(delay), headers=headers)


def pin_jitter(client: Any, value: float) -> None:
    """Make the jitter draw `value` (in [0, 1)) every time, for exact bounds."""
    client.target._engine._jitter = lambda: value


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
    make_client: Any, gemini: Any, fake_time: FakeTime, status: int
) -> None:
    gemini.side_effect = [failure(status), failure(status), ok()]
    result = make_client().generate("x")
    assert result.attempts == 3
    assert gemini.call_count == 3
    assert_backoff(fake_time.sleeps, 2)


def test_attempts_counts_a_single_retry(make_client: Any, gemini: Any, fake_time: FakeTime) -> None:
    gemini.side_effect = [failure(503), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert gemini.call_count == 2
    assert_backoff(fake_time.sleeps, 1)


@pytest.mark.parametrize(("status", "error_class"), RETRYABLE)
def test_exhausted_retries_raise_the_last_error(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    status: int,
    error_class: type[aigen.APIError],
) -> None:
    gemini.side_effect = [failure(status, request_id=f"req-{n}") for n in (1, 2, 3)]
    with pytest.raises(aigen.APIError) as caught:
        make_client().generate("x")
    error = caught.value
    assert type(error) is error_class
    assert error.status_code == status
    assert error.request_id == "req-3"  # the last one, not the first
    assert error.attempts == 3
    assert is_uuid4(error.generation_id)
    assert gemini.call_count == 3
    assert_backoff(fake_time.sleeps, 2)


def test_errors_of_different_calls_have_different_generation_ids(
    make_client: Any, gemini: Any
) -> None:
    gemini.mock(return_value=failure(503))
    client = make_client(max_retries=0)
    ids = set()
    for _ in range(3):
        with pytest.raises(aigen.ServerError) as caught:
            client.generate("x")
        ids.add(caught.value.generation_id)
    assert len(ids) == 3


# -- backoff without a hint ------------------------------------------------------------


def test_backoff_waits_1_2_4_seconds_with_jitter(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.mock(return_value=failure(503))
    with pytest.raises(aigen.ServerError) as caught:
        make_client(max_retries=3).generate("x")
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
    make_client: Any, gemini: Any, fake_time: FakeTime, draw: float, expected: list[float]
) -> None:
    gemini.mock(return_value=failure(503))
    client = make_client(max_retries=3)
    pin_jitter(client, draw)
    with pytest.raises(aigen.ServerError):
        client.generate("x")
    assert fake_time.sleeps == [pytest.approx(e, abs=1e-5) for e in expected]


def test_backoff_has_jitter(make_client: Any, gemini: Any, fake_time: FakeTime) -> None:
    # Clients that failed together must not retry in lockstep.
    client = make_client()
    for _ in range(8):
        gemini.side_effect = [failure(503), ok()]
        client.generate("x")
    assert len(fake_time.sleeps) == 8
    assert all(1.0 <= s <= 1.25 for s in fake_time.sleeps)
    assert len(set(fake_time.sleeps)) > 1


def test_backoff_is_capped_by_max_delay(make_client: Any, gemini: Any, fake_time: FakeTime) -> None:
    gemini.mock(return_value=failure(503))
    client = make_client(retry=RetryPolicy(max_retries=5, max_delay=3.0))
    with pytest.raises(aigen.ServerError) as caught:
        client.generate("x")
    assert caught.value.attempts == 6
    assert_backoff(fake_time.sleeps, 5, max_delay=3.0)
    assert fake_time.sleeps[2:] == [3.0, 3.0, 3.0]


def test_max_delay_caps_jitter_too(make_client: Any, gemini: Any, fake_time: FakeTime) -> None:
    gemini.mock(return_value=failure(503))
    client = make_client(retry=RetryPolicy(max_retries=2, max_delay=2.2))
    pin_jitter(client, 0.999999)
    with pytest.raises(aigen.ServerError):
        client.generate("x")
    assert fake_time.sleeps == [pytest.approx(1.25, abs=1e-5), 2.2]


def test_initial_delay_is_respected(make_client: Any, gemini: Any, fake_time: FakeTime) -> None:
    gemini.mock(return_value=failure(500))
    client = make_client(retry=RetryPolicy(max_retries=3, initial_delay=0.5))
    with pytest.raises(aigen.ServerError):
        client.generate("x")
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
        pytest.param(lambda: failure(503), id="503"),
        pytest.param(lambda: rate_limited("1s"), id="429"),
        pytest.param(lambda: httpx.ConnectError("boom"), id="connect-error"),
        pytest.param(lambda: httpx.ReadTimeout("slow"), id="read-timeout"),
    ],
)
def test_no_retries_means_one_attempt(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    keywords: dict[str, Any],
    answer: Callable[[], Any],
) -> None:
    gemini.side_effect = [answer(), ok()]
    with pytest.raises(aigen.GenerationError) as caught:
        make_client(**keywords).generate("x")
    assert caught.value.attempts == 1
    assert gemini.call_count == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize(("max_retries", "attempts"), [(1, 2), (4, 5)])
def test_retry_policy_sets_the_number_of_attempts(
    make_client: Any, gemini: Any, fake_time: FakeTime, max_retries: int, attempts: int
) -> None:
    gemini.mock(return_value=failure(503))
    with pytest.raises(aigen.ServerError) as caught:
        make_client(retry=RetryPolicy(max_retries=max_retries)).generate("x")
    assert caught.value.attempts == attempts
    assert gemini.call_count == attempts
    assert_backoff(fake_time.sleeps, attempts - 1)


def test_max_retries_keyword_sets_the_number_of_attempts(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.mock(return_value=failure(503))
    with pytest.raises(aigen.ServerError) as caught:
        make_client(max_retries=1).generate("x")
    assert caught.value.attempts == 2
    assert gemini.call_count == 2


def test_max_retries_and_retry_together_is_a_configuration_error(
    make_client: Any, gemini: Any
) -> None:
    with pytest.raises(aigen.ConfigurationError, match="max_retries"):
        make_client(max_retries=1, retry=RetryPolicy(max_retries=3))
    assert gemini.call_count == 0


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
    make_client: Any, gemini: Any, fake_time: FakeTime, headers: dict[str, str], hint: float
) -> None:
    gemini.side_effect = [rate_limited(None, **headers), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], hint)


def test_retry_after_http_date_is_obeyed(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    date = formatdate(fake_time.now + 20, usegmt=True)
    gemini.side_effect = [rate_limited(None, **{"Retry-After": date}), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], 20.0)


@pytest.mark.parametrize(
    ("delay", "hint"), [("17s", 17.0), ("45.837906927s", 45.837906927), ("2s", 2.0)]
)
def test_gemini_retry_info_is_obeyed(
    make_client: Any, gemini: Any, fake_time: FakeTime, delay: str, hint: float
) -> None:
    gemini.side_effect = [rate_limited(delay), rate_limited(delay), ok()]
    result = make_client().generate("x")
    assert result.attempts == 3
    assert len(fake_time.sleeps) == 2
    for slept in fake_time.sleeps:
        assert_obeys(slept, hint)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_header_hint_on_a_5xx_is_obeyed(
    make_client: Any, gemini: Any, fake_time: FakeTime, status: int
) -> None:
    response = failure(status)
    response.headers["Retry-After"] = "5"
    gemini.side_effect = [response, ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], 5.0)


@pytest.mark.parametrize(
    ("delay", "headers", "hint"),
    [
        pytest.param("5s", {"Retry-After": "8"}, 8.0, id="header longer"),
        pytest.param("9s", {"Retry-After": "3"}, 9.0, id="body longer"),
        pytest.param("4s", {"retry-after-ms": "6500"}, 6.5, id="ms header longer"),
        pytest.param("12.5s", {"retry-after-ms": "6500"}, 12.5, id="body longer than ms"),
    ],
)
def test_when_body_and_header_both_hint_the_longer_wins(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    delay: str,
    headers: dict[str, str],
    hint: float,
) -> None:
    gemini.side_effect = [rate_limited(delay, **headers), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], hint)


def test_hint_is_not_capped_by_max_delay(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [rate_limited("10s"), ok()]
    result = make_client(retry=RetryPolicy(max_delay=2.0)).generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], 10.0)


def test_hint_up_to_max_retry_after_is_slept_on(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [rate_limited("60s"), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], 60.0)


def test_hints_and_backoff_mix_in_one_call(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [failure(503), rate_limited("7s"), ok()]
    result = make_client().generate("x")
    assert result.attempts == 3
    assert len(fake_time.sleeps) == 2
    assert 1.0 <= fake_time.sleeps[0] <= 1.25
    assert_obeys(fake_time.sleeps[1], 7.0)


# -- hints too long to wait for --------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "hint"),
    [
        pytest.param(lambda: rate_limited("120s"), 120.0, id="RetryInfo"),
        pytest.param(lambda: rate_limited(None, **{"Retry-After": "61"}), 61.0, id="Retry-After"),
        pytest.param(
            lambda: rate_limited(None, **{"retry-after-ms": "90000"}), 90.0, id="retry-after-ms"
        ),
        pytest.param(
            lambda: rate_limited(None, **{"Retry-After": "86400"}), 86400.0, id="a whole day"
        ),
    ],
)
def test_hint_above_max_retry_after_raises_at_once(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    response: Callable[[], httpx.Response],
    hint: float,
) -> None:
    gemini.side_effect = [response(), ok()]
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client().generate("x")
    error = caught.value
    assert type(error) is aigen.RateLimitError
    assert error.retry_after == pytest.approx(hint)
    assert error.attempts == 1
    assert is_uuid4(error.generation_id)
    assert gemini.call_count == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize(("delay", "retried"), [("5s", True), ("5.5s", False), ("6s", False)])
def test_custom_max_retry_after(
    make_client: Any, gemini: Any, fake_time: FakeTime, delay: str, retried: bool
) -> None:
    gemini.side_effect = [rate_limited(delay), ok()]
    client = make_client(retry=RetryPolicy(max_retry_after=5.0))
    if retried:
        assert client.generate("x").attempts == 2
        assert fake_time.sleeps == [5.0]
    else:
        with pytest.raises(aigen.RateLimitError) as caught:
            client.generate("x")
        assert caught.value.retry_after == pytest.approx(float(delay[:-1]))
        assert caught.value.attempts == 1
        assert fake_time.sleeps == []


def test_too_long_hint_on_a_later_attempt_raises_then(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [failure(503), rate_limited("300s"), ok()]
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client().generate("x")
    assert caught.value.retry_after == 300.0
    assert caught.value.attempts == 2
    assert_backoff(fake_time.sleeps, 1)


def test_too_long_header_hint_on_a_503_is_not_slept_on(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    response = failure(503)
    response.headers["Retry-After"] = "3600"
    gemini.side_effect = [response, ok()]
    with pytest.raises(aigen.ServerError) as caught:
        make_client().generate("x")
    assert caught.value.retry_after == 3600.0
    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


def test_exhausted_429s_carry_the_last_hint(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [rate_limited("3s"), rate_limited("5s"), rate_limited("7s")]
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client().generate("x")
    error = caught.value
    assert type(error) is aigen.RateLimitError
    assert error.retry_after == 7.0
    assert error.attempts == 3
    assert is_uuid4(error.generation_id)
    assert len(fake_time.sleeps) == 2
    assert_obeys(fake_time.sleeps[0], 3.0)
    assert_obeys(fake_time.sleeps[1], 5.0)


def test_exhausted_429s_carry_the_last_header_hint(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [rate_limited(None, **{"Retry-After": str(n)}) for n in (2, 4, 6)]
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client().generate("x")
    assert caught.value.retry_after == 6.0
    assert caught.value.attempts == 3


# -- the deadline ----------------------------------------------------------------------


def test_deadline_stops_backoff_early(make_client: Any, gemini: Any, fake_time: FakeTime) -> None:
    start = fake_time.now
    gemini.mock(return_value=failure(503))
    with pytest.raises(aigen.ServerError) as caught:
        make_client(retry=RetryPolicy(max_retries=5, deadline=2.5)).generate("x")
    # t=0 fail, sleep 1..1.25, fail; the next wait (2..2.5) would end past 2.5 s.
    assert caught.value.attempts == 2
    assert is_uuid4(caught.value.generation_id)
    assert gemini.call_count == 2
    assert_backoff(fake_time.sleeps, 1)
    assert fake_time.now - start <= 2.5 + CLOCK_SLACK


@pytest.mark.parametrize("deadline", [0.5, 1.0, 2.0, 3.0, 3.8, 7.5, 20.0])
def test_no_sleep_ends_past_the_deadline(
    make_client: Any, gemini: Any, fake_time: FakeTime, deadline: float
) -> None:
    start = fake_time.now
    gemini.mock(return_value=failure(503))
    client = make_client(retry=RetryPolicy(max_retries=10, deadline=deadline))
    with pytest.raises(aigen.ServerError) as caught:
        client.generate("x")
    elapsed = fake_time.now - start
    assert elapsed <= deadline + CLOCK_SLACK
    assert caught.value.attempts == len(fake_time.sleeps) + 1
    assert_backoff(fake_time.sleeps, len(fake_time.sleeps))
    # It stopped because the next wait (at most 2**n * 1.25) would not fit, not for lack
    # of retries.
    longest_next_wait = 2 ** len(fake_time.sleeps) * (1 + JITTER)
    assert elapsed + longest_next_wait > deadline


def test_deadline_shorter_than_the_first_wait_means_one_attempt(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.mock(return_value=failure(503))
    with pytest.raises(aigen.ServerError) as caught:
        make_client(retry=RetryPolicy(deadline=0.9)).generate("x")
    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


def test_time_spent_in_attempts_counts_against_the_deadline(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    def slow_failure(request: httpx.Request) -> httpx.Response:
        fake_time.now += 2.0  # the server took two seconds to say 503
        return failure(503)

    gemini.side_effect = slow_failure
    with pytest.raises(aigen.ServerError) as caught:
        make_client(retry=RetryPolicy(deadline=2.5)).generate("x")
    # 2 s gone; even the shortest wait (1 s) would end at 3 s, past 2.5 s.
    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


def test_hint_past_the_deadline_raises_rate_limit_error_at_once(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [rate_limited("17s"), ok()]
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client(retry=RetryPolicy(deadline=10.0)).generate("x")
    error = caught.value
    assert type(error) is aigen.RateLimitError
    assert error.retry_after == 17.0
    assert error.attempts == 1
    assert is_uuid4(error.generation_id)
    assert gemini.call_count == 1
    assert fake_time.sleeps == []


def test_header_hint_past_the_deadline_raises_at_once(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [rate_limited(None, **{"Retry-After": "30"}), ok()]
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client(retry=RetryPolicy(deadline=20.0)).generate("x")
    assert caught.value.retry_after == 30.0
    assert caught.value.attempts == 1
    assert fake_time.sleeps == []


def test_hint_that_fits_once_but_not_twice(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [rate_limited("4s"), rate_limited("4s"), ok()]
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client(retry=RetryPolicy(deadline=6.0)).generate("x")
    assert caught.value.retry_after == 4.0
    assert caught.value.attempts == 2
    assert fake_time.sleeps == [4.0]


def test_deadline_caps_each_attempts_timeout(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [failure(503), ok()]
    client = make_client(timeout=120.0, retry=RetryPolicy(deadline=10.0))
    client.generate("x")
    first, second = (call.request.extensions["timeout"] for call in gemini.calls)
    assert all(0 < value <= 10.0 for value in first.values())
    left = 10.0 - fake_time.sleeps[0]
    assert all(0 < value <= left + CLOCK_SLACK for value in second.values())


def test_without_a_deadline_the_timeout_is_the_configured_one(
    make_client: Any, gemini: Any
) -> None:
    gemini.side_effect = [failure(503), ok()]
    make_client(timeout=42.0).generate("x")
    for call in gemini.calls:
        assert call.request.extensions["timeout"]["read"] == 42.0


# -- never retried ---------------------------------------------------------------------


NEVER_RETRIED = [
    pytest.param(200, gb.prompt_blocked(), aigen.ContentPolicyError, id="200-prompt-blocked"),
    pytest.param(200, gb.output_blocked(), aigen.ContentPolicyError, id="200-IMAGE_SAFETY"),
    pytest.param(200, gb.text_only(), aigen.NoImageError, id="200-no-image"),
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
    pytest.param(
        400,
        gb.error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
        aigen.BadRequestError,
        id="400",
    ),
    pytest.param(400, gb.key_invalid(), aigen.AuthenticationError, id="400-API_KEY_INVALID"),
    pytest.param(401, gb.error(401, "UNAUTHENTICATED", "no"), aigen.AuthenticationError, id="401"),
    pytest.param(
        403,
        gb.error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
        aigen.AuthenticationError,
        id="403",
    ),
    pytest.param(
        404,
        gb.error(404, "NOT_FOUND", "models/x is not found for API version v1beta"),
        aigen.NotFoundError,
        id="404",
    ),
]


@pytest.mark.parametrize("with_header_hint", [False, True], ids=["", "with-Retry-After"])
@pytest.mark.parametrize(("status", "body", "error_class"), NEVER_RETRIED)
def test_never_retried(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    caplog: pytest.LogCaptureFixture,
    status: int,
    body: dict[str, Any],
    error_class: type[aigen.GenerationError],
    with_header_hint: bool,
) -> None:
    # A hint says when to come back, not that coming back will help.
    headers = {"Retry-After": "1"} if with_header_hint else {}
    gemini.side_effect = [httpx.Response(status, json=body, headers=headers), ok()]
    caplog.set_level(logging.INFO, logger="aigen")
    with pytest.raises(error_class) as caught:
        make_client().generate("x")
    error = caught.value
    assert type(error) is error_class
    assert error.attempts == 1
    assert is_uuid4(error.generation_id)
    assert gemini.call_count == 1
    assert fake_time.sleeps == []
    assert retry_records(caplog) == []


def test_quota_exceeded_keeps_its_hint_but_is_not_retried(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    daily = gb.rate_limited("17s", quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    gemini.side_effect = [httpx.Response(429, json=daily), ok()]
    with pytest.raises(aigen.QuotaExceededError) as caught:
        make_client(retry=RetryPolicy(max_retries=5)).generate("x")
    assert isinstance(caught.value, aigen.RateLimitError)
    assert caught.value.attempts == 1
    assert gemini.call_count == 1
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
    gemini: Any,
    fake_time: FakeTime,
    make_exc: Callable[[], httpx.HTTPError],
    error_class: type[aigen.GenerationError],
) -> None:
    gemini.side_effect = [make_exc(), make_exc(), make_exc()]
    with pytest.raises(aigen.GenerationError) as caught:
        make_client().generate("x")
    error = caught.value
    assert type(error) is error_class
    assert not isinstance(error, httpx.HTTPError)
    assert error.attempts == 3
    assert is_uuid4(error.generation_id)
    assert "gemini" in str(error)
    assert gemini.call_count == 3
    assert_backoff(fake_time.sleeps, 2)


@pytest.mark.parametrize(("make_exc", "error_class"), TRANSPORT_ERRORS)
def test_transport_error_then_success(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    make_exc: Callable[[], httpx.HTTPError],
    error_class: type[aigen.GenerationError],
) -> None:
    gemini.side_effect = [make_exc(), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert_backoff(fake_time.sleeps, 1)


def test_the_last_failure_decides_the_error_type(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [httpx.ConnectError("boom"), failure(503), httpx.ReadTimeout("slow")]
    with pytest.raises(aigen.APITimeoutError) as caught:
        make_client().generate("x")
    assert caught.value.attempts == 3
    assert_backoff(fake_time.sleeps, 2)


def test_a_non_retryable_answer_after_a_connection_error_ends_the_call(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [httpx.ConnectError("boom"), httpx.Response(200, json=gb.prompt_blocked())]
    with pytest.raises(aigen.ContentPolicyError) as caught:
        make_client().generate("x")
    assert caught.value.attempts == 2
    assert gemini.call_count == 2


# -- logging ---------------------------------------------------------------------------


def retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "aigen" and r.levelno == logging.INFO]


def test_each_retry_logs_one_info_record(
    make_client: Any, gemini: Any, fake_time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    gemini.side_effect = [failure(503), httpx.ConnectError("boom"), ok()]
    caplog.set_level(logging.INFO, logger="aigen")
    result = make_client().generate("x")

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
    make_client: Any, gemini: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gemini.side_effect = [rate_limited("17s"), ok()]
    caplog.set_level(logging.INFO, logger="aigen")
    result = make_client().generate("x")
    (record,) = retry_records(caplog)
    text = record.getMessage()
    assert result.generation_id in text
    assert re.search(r"\battempt 1\b", text), text
    assert "17.00" in text
    assert "429" in text or "exceeded" in text.lower()


def test_retries_that_run_out_log_the_same_id_as_the_error(
    make_client: Any, gemini: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gemini.side_effect = [httpx.ReadTimeout("slow")] * 3
    caplog.set_level(logging.INFO, logger="aigen")
    with pytest.raises(aigen.APITimeoutError) as caught:
        make_client().generate("x")
    generation_id = caught.value.generation_id
    assert is_uuid4(generation_id)
    records = retry_records(caplog)
    assert len(records) == 2  # a log per retry, none for the final failure
    assert all(str(generation_id) in r.getMessage() for r in records)


def test_no_retry_no_info_record(
    make_client: Any, gemini: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gemini.side_effect = [ok()]
    caplog.set_level(logging.INFO, logger="aigen")
    make_client().generate("x")
    assert retry_records(caplog) == []
