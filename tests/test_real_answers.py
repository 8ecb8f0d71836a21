"""Real answers from issue threads that the contract reads as the user would expect.

Each case is a body or header a real service (or a proxy in front of it) sent: a zero-tier
quota, a `Retry-After: 0`, a `Retry-After: 1e35`, `finishReason: OTHER` with a message, a
safety refusal with `code: null`, and `{"candidates": null}`. Both clients, through respx.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

import aigen

from . import gemini_bodies as gb
from .conftest import FakeTime
from .test_retry_hints import imf_date

GEMINI = "https://generativelanguage.googleapis.com"
OPENAI_GENERATIONS = "https://api.openai.com/v1/images/generations"


@pytest.fixture
def gemini() -> Any:
    with respx.mock(base_url=GEMINI, assert_all_called=False) as router:
        yield router.post(gb.PATH)


@pytest.fixture
def openai() -> Any:
    with respx.mock(assert_all_called=False) as router:
        yield router.post(OPENAI_GENERATIONS)


def ok() -> httpx.Response:
    return httpx.Response(200, json=gb.image_answer())


def _plain_429(**headers: str) -> httpx.Response:
    body = gb.error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
    return httpx.Response(429, json=body, headers=headers)


# -- a quota of zero, said only in ErrorInfo -----------------------------------------------

ZERO_TIER = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "RATE_LIMIT_EXCEEDED",
    "domain": "googleapis.com",
    "metadata": {
        "service": "generativelanguage.googleapis.com",
        "quota_metric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quota_location": "global",
        "quota_limit": "GenerateContentRequestsPerMinutePerProjectPerModel-FreeTier",
        "quota_limit_value": "0",
        "consumer": "projects/123456789",
    },
}


def test_a_zero_quota_in_error_info_is_quota_exceeded_and_not_retried(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    body = gb.error(429, "RESOURCE_EXHAUSTED", gb.shipped.EXHAUSTED, ZERO_TIER)
    gemini.mock(return_value=httpx.Response(429, json=body))
    with pytest.raises(aigen.QuotaExceededError):
        make_client().generate("x")
    assert gemini.call_count == 1
    assert fake_time.sleeps == []


def test_a_nonzero_quota_in_error_info_is_still_a_retried_rate_limit(
    make_client: Any, gemini: Any
) -> None:
    info = {**ZERO_TIER, "metadata": {**ZERO_TIER["metadata"], "quota_limit_value": "10"}}  # type: ignore[dict-item]
    body = gb.error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.", info)
    gemini.side_effect = [httpx.Response(429, json=body), ok()]
    assert make_client().generate("x").attempts == 2


# -- Retry-After: 0 and a date in the past: the backoff is a floor --------------------------


@pytest.mark.parametrize("style", ["zero", "past date", "ms zero"])
def test_a_zero_hint_waits_the_backoff_not_zero(
    make_client: Any, gemini: Any, fake_time: FakeTime, style: str
) -> None:
    headers = {
        "zero": {"Retry-After": "0"},
        "past date": {"Retry-After": imf_date(fake_time.now - 60)},
        "ms zero": {"retry-after-ms": "0"},
    }[style]
    gemini.side_effect = [_plain_429(**headers), _plain_429(**headers), ok()]
    result = make_client().generate("x")
    assert result.attempts == 3
    # the policy's 1 s, 2 s (with up to 25% jitter), not two retries at once
    assert 1.0 <= fake_time.sleeps[0] <= 1.25
    assert 2.0 <= fake_time.sleeps[1] <= 2.5


def test_a_hint_longer_than_the_backoff_is_still_obeyed_exactly(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [_plain_429(**{"Retry-After": "7"}), ok()]
    make_client().generate("x")
    assert fake_time.sleeps == [pytest.approx(7.0)]


def test_a_short_hint_is_never_cut_short(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [_plain_429(**{"retry-after-ms": "1100"}), ok()]
    make_client().generate("x")
    assert fake_time.sleeps[0] >= 1.1


def test_without_backoff_a_zero_hint_is_zero(
    make_client: Any, gemini: Any, fake_time: FakeTime
) -> None:
    gemini.side_effect = [_plain_429(**{"Retry-After": "0"}), ok()]
    make_client(retry=aigen.RetryPolicy(initial_delay=0)).generate("x")
    assert fake_time.sleeps == [0.0]


# -- a huge Retry-After is reported capped -----------------------------------------------


@pytest.mark.parametrize("value", ["1e35", "31536000", "99999999999999999999"])
def test_a_huge_retry_after_is_reported_capped(
    make_client: Any, gemini: Any, fake_time: FakeTime, value: str
) -> None:
    gemini.mock(return_value=_plain_429(**{"Retry-After": value}))
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client().generate("x")
    assert caught.value.retry_after == 86400.0
    assert gemini.call_count == 1  # over max_retry_after: raised at once, not slept on
    assert fake_time.sleeps == []


def test_a_huge_body_hint_is_reported_capped(make_client: Any, gemini: Any) -> None:
    body = gb.error(429, "RESOURCE_EXHAUSTED", "quota", gb.retry_info("100000000000s"))
    gemini.mock(return_value=httpx.Response(429, json=body))
    with pytest.raises(aigen.RateLimitError) as caught:
        make_client().generate("x")
    assert caught.value.retry_after == 86400.0


# -- Gemini: finishReason OTHER with a finishMessage ----------------------------------------


def test_finish_message_is_in_the_no_image_error(make_client: Any, gemini: Any) -> None:
    body = {
        "candidates": [
            {
                "content": {},
                "finishReason": "OTHER",
                "finishMessage": "Unable to generate an image for this request right now.",
                "index": 0,
            }
        ],
        "modelVersion": gb.MODEL,
    }
    gemini.mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(aigen.NoImageError) as caught:
        make_client().generate("x")
    assert "OTHER" in str(caught.value)
    assert "Unable to generate an image for this request right now." in str(caught.value)


def test_finish_message_and_text_are_both_kept(make_client: Any, gemini: Any) -> None:
    body = gb.text_only("I drew nothing.", reason="NO_IMAGE")
    body["candidates"][0]["finishMessage"] = "No image was produced."
    gemini.mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(aigen.NoImageError) as caught:
        make_client().generate("x")
    assert "No image was produced." in str(caught.value)
    assert "I drew nothing." in str(caught.value)
    assert caught.value.text == "I drew nothing."


# -- Gemini: no candidates at all -------------------------------------------------------


def test_null_candidates_say_the_model_returned_none(make_client: Any, gemini: Any) -> None:
    body = {
        "candidates": None,
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 0},
        "modelVersion": gb.MODEL,
    }
    gemini.mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(aigen.GenerationError) as caught:
        make_client().generate("x")
    message = str(caught.value)
    assert "no candidates" in message
    assert "silent refusal" in message
    assert "no output tokens" in message
    assert gemini.call_count == 1


# -- OpenAI: a safety refusal with code null ----------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "Your request was rejected by the safety system. If you believe this is an "
            "error, contact us. safety_violations=[violence].",
            "moderation_blocked",
        ),
        (
            "Your request was rejected as a result of our safety system. Your prompt may "
            "contain text that is not allowed by our safety system.",
            "content_policy_violation",
        ),
    ],
)
def test_safety_refusal_with_null_code_has_a_safety_reason(
    make_client: Any, openai: Any, message: str, reason: str
) -> None:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    openai.mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(aigen.ContentPolicyError) as caught:
        make_client(provider="openai").generate("x")
    assert caught.value.reason == reason
    assert "invalid_request_error" not in str(caught.value)
    assert openai.call_count == 1


def test_safety_refusal_with_its_code_keeps_it(make_client: Any, openai: Any) -> None:
    body = {
        "error": {
            "message": "Your request was rejected by the safety system.",
            "type": "image_generation_user_error",
            "code": "content_policy_violation",
        }
    }
    openai.mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(aigen.ContentPolicyError) as caught:
        make_client(provider="openai").generate("x")
    assert caught.value.reason == "content_policy_violation"
