"""Reading the server's retry hints: `Retry-After`, `retry-after-ms`, Gemini's `RetryInfo`.

The header parser is checked as a table; Gemini's body hints are checked through the
public path (a mocked 429, then `RateLimitError.retry_after` or the recorded sleep).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import respx

import aigen
from aigen._retry import parse_retry_after_headers

from . import gemini_bodies as gb
from .conftest import FakeTime

BASE = "https://generativelanguage.googleapis.com"
NOW = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC, a whole second

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc)


def imf_date(timestamp: float) -> str:
    """RFC 9110's preferred form: `Sun, 06 Nov 1994 08:49:37 GMT`."""
    return formatdate(timestamp, usegmt=True)


def rfc850_date(timestamp: float) -> str:
    """RFC 9110's obsolete form: `Sunday, 06-Nov-94 08:49:37 GMT`."""
    d = _utc(timestamp)
    return (
        f"{_LONG_DAYS[d.weekday()]}, {d.day:02d}-{_MONTHS[d.month - 1]}-{d.year % 100:02d} "
        f"{d:%H:%M:%S} GMT"
    )


def asctime_date(timestamp: float) -> str:
    """C's asctime() form, also a valid HTTP-date (GMT implied): `Sun Nov  6 08:49:37 1994`."""
    d = _utc(timestamp)
    return f"{_DAYS[d.weekday()]} {_MONTHS[d.month - 1]} {d.day:>2} {d:%H:%M:%S} {d.year}"


def zoned_date(timestamp: float, offset_hours: int) -> str:
    """An RFC 5322 date written in another zone, e.g. `... 17:06:40 +0200`."""
    d = _utc(timestamp).astimezone(timezone(timedelta(hours=offset_hours)))
    return (
        f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year} {d:%H:%M:%S} "
        f"{offset_hours:+03d}00"
    )


def unzoned_date(timestamp: float, zone: str = "") -> str:
    """An RFC 1123 date with `-0000` or no zone at all: read as GMT, like every HTTP date."""
    return imf_date(timestamp).removesuffix(" GMT") + (f" {zone}" if zone else "")


# -- the header table ------------------------------------------------------------------

HEADER_CASES: list[tuple[str, dict[str, str], float | None]] = [
    # Retry-After in seconds
    ("seconds", {"retry-after": "5"}, 5.0),
    ("zero", {"retry-after": "0"}, 0.0),
    ("fraction", {"retry-after": "1.5"}, 1.5),
    ("whitespace", {"retry-after": "  5 "}, 5.0),
    ("huge", {"retry-after": "86400"}, 86400.0),
    ("a year", {"retry-after": "31536000"}, 31536000.0),
    # Retry-After as an HTTP date, against `now`
    ("date in 30 s", {"retry-after": imf_date(NOW + 30)}, 30.0),
    ("date in 1 h", {"retry-after": imf_date(NOW + 3600)}, 3600.0),
    ("date now", {"retry-after": imf_date(NOW)}, 0.0),
    ("date in the past", {"retry-after": imf_date(NOW - 30)}, 0.0),
    ("date long past", {"retry-after": "Sun, 06 Nov 1994 08:49:37 GMT"}, 0.0),
    ("rfc850 date", {"retry-after": rfc850_date(NOW + 30)}, 30.0),
    ("asctime date (GMT implied)", {"retry-after": asctime_date(NOW + 30)}, 30.0),
    ("date in +0200", {"retry-after": zoned_date(NOW + 30, 2)}, 30.0),
    ("date in -0500", {"retry-after": zoned_date(NOW + 30, -5)}, 30.0),
    ("date with -0000 (UTC)", {"retry-after": unzoned_date(NOW + 30, "-0000")}, 30.0),
    ("naive date read as GMT", {"retry-after": unzoned_date(NOW + 30)}, 30.0),
    ("date with padding", {"retry-after": f"  {imf_date(NOW + 30)}  "}, 30.0),
    # Dates that are not dates
    ("day 32", {"retry-after": "Sun, 32 Jun 2025 14:26:40 GMT"}, None),
    ("hour 25", {"retry-after": "Sun, 15 Jun 2025 25:26:40 GMT"}, None),
    ("31 February", {"retry-after": "Sat, 31 Feb 2025 00:00:00 GMT"}, None),
    ("words", {"retry-after": "tomorrow"}, None),
    # retry-after-ms
    ("ms", {"retry-after-ms": "250"}, 0.25),
    ("ms zero", {"retry-after-ms": "0"}, 0.0),
    ("ms fraction", {"retry-after-ms": "1500.5"}, 1.5005),
    ("ms whitespace", {"retry-after-ms": " 750 "}, 0.75),
    # both: the longer wins, aigen never retries early
    ("both, ms longer", {"retry-after": "2", "retry-after-ms": "2500"}, 2.5),
    ("both, seconds longer", {"retry-after": "3", "retry-after-ms": "250"}, 3.0),
    ("both, date longer", {"retry-after": imf_date(NOW + 30), "retry-after-ms": "900"}, 30.0),
    ("both, seconds garbage", {"retry-after": "soon", "retry-after-ms": "400"}, 0.4),
    ("both, ms garbage", {"retry-after": "4", "retry-after-ms": "soon"}, 4.0),
    ("both garbage", {"retry-after": "soon", "retry-after-ms": "later"}, None),
    # negative, garbage, non-finite: ignored, so backoff takes over
    ("negative", {"retry-after": "-1"}, None),
    ("negative fraction", {"retry-after": "-0.5"}, None),
    ("ms negative", {"retry-after-ms": "-250"}, None),
    ("garbage", {"retry-after": "soon"}, None),
    ("unit suffix", {"retry-after": "5s"}, None),
    ("comma decimal", {"retry-after": "1,5"}, None),
    ("hex", {"retry-after": "0x10"}, None),
    ("empty", {"retry-after": ""}, None),
    ("blank", {"retry-after": "   "}, None),
    ("nan", {"retry-after": "nan"}, None),
    ("NaN", {"retry-after": "NaN"}, None),
    ("inf", {"retry-after": "inf"}, None),
    ("-inf", {"retry-after": "-inf"}, None),
    ("Infinity", {"retry-after": "Infinity"}, None),
    ("overflows to inf", {"retry-after": "1e999"}, None),
    ("ms nan", {"retry-after-ms": "nan"}, None),
    ("ms inf", {"retry-after-ms": "inf"}, None),
    ("ms garbage", {"retry-after-ms": "soon"}, None),
    # nothing to read
    ("no headers", {}, None),
    ("other headers only", {"x-ratelimit-reset-requests": "1s", "content-type": "x"}, None),
]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [pytest.param(headers, expected, id=name) for name, headers, expected in HEADER_CASES],
)
def test_parse_retry_after_headers(headers: dict[str, str], expected: float | None) -> None:
    hint = parse_retry_after_headers(headers, NOW)
    if expected is None:
        assert hint is None
    else:
        assert isinstance(hint, float)
        assert hint == pytest.approx(expected, abs=1e-9)


def test_seconds_do_not_depend_on_now() -> None:
    assert parse_retry_after_headers({"retry-after": "5"}, 0.0) == 5.0
    assert parse_retry_after_headers({"retry-after": "5"}, NOW * 2) == 5.0
    assert parse_retry_after_headers({"retry-after-ms": "5"}, NOW * 2) == pytest.approx(0.005)


def test_a_date_is_measured_from_now() -> None:
    date = imf_date(NOW + 100)
    assert parse_retry_after_headers({"retry-after": date}, NOW) == pytest.approx(100.0)
    assert parse_retry_after_headers({"retry-after": date}, NOW + 40) == pytest.approx(60.0)
    assert parse_retry_after_headers({"retry-after": date}, NOW + 500) == 0.0


# -- through the public path -----------------------------------------------------------


@pytest.fixture
def gemini() -> Any:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router.post(gb.PATH)


def too_many(*details: dict[str, Any], message: str = "You exceeded your current quota.") -> Any:
    return httpx.Response(429, json=gb.error(429, "RESOURCE_EXHAUSTED", message, *details))


def ok() -> httpx.Response:
    return httpx.Response(200, json=gb.image_answer())


PER_MINUTE = gb.quota_failure()
RETRY_IN_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
    "Please retry in {}."
)

BODY_CASES: list[tuple[str, list[dict[str, Any]], str, float | None]] = [
    ("whole seconds", [PER_MINUTE, gb.retry_info("17s")], "quota", 17.0),
    ("nanoseconds", [PER_MINUTE, gb.retry_info("45.837906927s")], "quota", 45.837906927),
    ("zero", [PER_MINUTE, gb.retry_info("0s")], "quota", 0.0),
    ("half a second", [gb.retry_info("0.5s")], "quota", 0.5),
    ("RetryInfo first", [gb.retry_info("17s"), PER_MINUTE], "quota", 17.0),
    ("RetryInfo alone", [gb.retry_info("17s")], "quota", 17.0),
    ("garbage", [PER_MINUTE, gb.retry_info("soon")], "quota", None),
    ("no unit", [PER_MINUTE, gb.retry_info("17")], "quota", None),
    ("empty", [PER_MINUTE, gb.retry_info("")], "quota", None),
    ("negative", [PER_MINUTE, gb.retry_info("-5s")], "quota", None),
    ("minutes", [PER_MINUTE, gb.retry_info("1m")], "quota", None),
    (
        "not a string",
        [PER_MINUTE, {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": 17}],
        "quota",
        None,
    ),
    ("no RetryInfo", [PER_MINUTE], "quota", None),
    ("no details", [], "Resource has been exhausted (e.g. check quota).", None),
    ("message only", [PER_MINUTE], RETRY_IN_MESSAGE.format("58.93s"), 58.93),
    (
        "message more precise than RetryInfo",
        [PER_MINUTE, gb.retry_info("58s")],
        RETRY_IN_MESSAGE.format("58.934310785s"),
        58.934310785,
    ),
    (
        "RetryInfo longer than message",
        [PER_MINUTE, gb.retry_info("20s")],
        RETRY_IN_MESSAGE.format("3.5s"),
        20.0,
    ),
    ("message, no details", [], RETRY_IN_MESSAGE.format("12s"), 12.0),
]


@pytest.mark.parametrize(
    ("details", "message", "expected"),
    [
        pytest.param(details, message, expected, id=name)
        for name, details, message, expected in BODY_CASES
    ],
)
def test_gemini_body_hint_is_the_rate_limit_errors_retry_after(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    details: list[dict[str, Any]],
    message: str,
    expected: float | None,
) -> None:
    gemini.mock(return_value=too_many(*details, message=message))
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client(max_retries=0).generate("x")
    error = caught.value
    assert type(error) is aigen.RateLimitError
    if expected is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(expected, abs=1e-9)
    assert gemini.call_count == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    ("details", "message", "expected"),
    [
        pytest.param([gb.retry_info("17s")], "quota", 17.0, id="whole seconds"),
        pytest.param([gb.retry_info("45.837906927s")], "quota", 45.837906927, id="nanoseconds"),
        pytest.param([PER_MINUTE], RETRY_IN_MESSAGE.format("58.93s"), 58.93, id="message"),
        pytest.param(
            [gb.retry_info("58s")],
            RETRY_IN_MESSAGE.format("58.934310785s"),
            58.934310785,
            id="message more precise",
        ),
    ],
)
def test_gemini_body_hint_is_slept_on(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    details: list[dict[str, Any]],
    message: str,
    expected: float,
) -> None:
    gemini.side_effect = [too_many(*details, message=message), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert fake_time.sleeps[0] >= expected  # never sooner than asked
    assert fake_time.sleeps[0] == pytest.approx(expected, rel=0.25)


def test_zero_retry_delay_is_not_a_reason_to_wait_long(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [too_many(PER_MINUTE, gb.retry_info("0s")), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert 0.0 <= fake_time.sleeps[0] <= 1.25


@pytest.mark.parametrize("delay", ["soon", "17", "-5s"])
def test_garbage_retry_delay_falls_back_to_backoff(
    make_client: Any, gemini: Any, fake_time: FakeTime, delay: str
) -> None:
    gemini.side_effect = [too_many(PER_MINUTE, gb.retry_info(delay)), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert 1.0 <= fake_time.sleeps[0] <= 1.25


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"Retry-After": "7"}, 7.0, id="seconds"),
        pytest.param({"Retry-After": "1.5"}, 1.5, id="fraction"),
        pytest.param({"retry-after-ms": "250"}, 0.25, id="ms"),
        pytest.param({"Retry-After": "2", "retry-after-ms": "2500"}, 2.5, id="both"),
        pytest.param({"Retry-After": "86400"}, 86400.0, id="huge"),
    ],
)
def test_header_hint_is_the_rate_limit_errors_retry_after(
    make_client: Any, gemini: Any, headers: dict[str, str], expected: float
) -> None:
    body = gb.error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
    gemini.mock(return_value=httpx.Response(429, json=body, headers=headers))
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client(max_retries=0).generate("x")
    assert caught.value.retry_after == pytest.approx(expected)


@pytest.mark.parametrize(
    "make_date",
    [
        pytest.param(imf_date, id="imf-fixdate"),
        pytest.param(rfc850_date, id="rfc850"),
        pytest.param(asctime_date, id="asctime"),
    ],
)
def test_header_date_is_obeyed(
    make_client: Any, gemini: Any, fake_time: FakeTime, make_date: Any
) -> None:
    # The date is written against the fake wall clock the client reads.
    date = make_date(fake_time.now + 30)
    body = gb.error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
    gemini.side_effect = [httpx.Response(429, json=body, headers={"Retry-After": date}), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert fake_time.sleeps == [pytest.approx(30.0)]


def test_header_date_in_the_past_is_zero(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    body = gb.error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
    date = imf_date(fake_time.now - 60)
    gemini.mock(return_value=httpx.Response(429, json=body, headers={"Retry-After": date}))
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client(max_retries=0).generate("x")
    assert caught.value.retry_after == 0.0


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-3", "", "Sun, 32 Jun 2025 00:00:00 GMT"])
def test_broken_header_falls_back_to_backoff(
    make_client: Any, gemini: Any, fake_time: FakeTime, value: str
) -> None:
    body = gb.error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
    gemini.side_effect = [httpx.Response(429, json=body, headers={"Retry-After": value}), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert 1.0 <= fake_time.sleeps[0] <= 1.25


def test_broken_header_does_not_hide_the_body_hint(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    response = too_many(PER_MINUTE, gb.retry_info("9s"))
    response.headers["Retry-After"] = "nan"
    gemini.side_effect = [response, ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert fake_time.sleeps == [pytest.approx(9.0)]


def gemini_rate_limited(delay: str | None, **headers: str) -> httpx.Response:
    """A per-minute Gemini 429, with `RetryInfo` when `delay` is given."""
    return httpx.Response(429, json=gb.rate_limited(delay), headers=headers)


def assert_obeys(slept: float, hint: float) -> None:
    """A hint is obeyed: never less, and not much more (25% jitter at most)."""
    assert hint <= slept <= hint * 1.25 + 1e-9, f"slept {slept} on a hint of {hint}"


@pytest.mark.parametrize(
    ("delay", "hint"), [("17s", 17.0), ("45.837906927s", 45.837906927), ("2s", 2.0)]
)
def test_gemini_retry_info_is_obeyed(
    make_client: Any, gemini: Any, fake_time: FakeTime, delay: str, hint: float
) -> None:
    gemini.side_effect = [gemini_rate_limited(delay), gemini_rate_limited(delay), ok()]
    result = make_client().generate("x")
    assert result.attempts == 3
    assert len(fake_time.sleeps) == 2
    for slept in fake_time.sleeps:
        assert_obeys(slept, hint)


@pytest.mark.parametrize(
    ("delay", "headers", "hint"),
    [
        # RetryInfo against Retry-After runs for every provider in test_retries.py; against
        # retry-after-ms only Gemini can say it, since OpenAI's own hint is that header.
        pytest.param("4s", {"retry-after-ms": "6500"}, 6.5, id="ms header longer"),
        pytest.param("12.5s", {"retry-after-ms": "6500"}, 12.5, id="body longer than ms"),
    ],
)
def test_when_retry_info_and_retry_after_ms_both_hint_the_longer_wins(
    make_client: Any,
    gemini: Any,
    fake_time: FakeTime,
    delay: str,
    headers: dict[str, str],
    hint: float,
) -> None:
    gemini.side_effect = [gemini_rate_limited(delay, **headers), ok()]
    result = make_client().generate("x")
    assert result.attempts == 2
    assert len(fake_time.sleeps) == 1
    assert_obeys(fake_time.sleeps[0], hint)
