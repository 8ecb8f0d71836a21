"""What every provider does the same way: run for each provider x both clients.

Only `kit` knows how a provider phrases an answer; these tests never name a provider.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest

import aigen

from .conftest import API_KEY, FakeTime
from .images import jpeg, png, webp_lossy


def client_for(make_client: Any, kit: Any, **kwargs: Any) -> Any:
    return make_client(provider=kit.name, **kwargs)


def test_success_fills_every_field(make_client: Any, kit: Any, api: Any) -> None:
    image = png(64, 32)
    api.mock(return_value=kit.success(image, request_id="rid-1"))

    result = client_for(make_client, kit).generate("A banana", width=512, height=512)

    assert result.image_data == image
    assert (result.mime_type, result.width, result.height) == ("image/png", 64, 32)
    assert uuid.UUID(result.generation_id).version == 4
    assert result.provider == kit.name
    assert result.request_id == "rid-1"
    assert result.usage.total_tokens == 1302
    assert result.attempts == 1
    assert 0 <= result.inference_time_ms <= result.total_time_ms


@pytest.mark.parametrize(
    ("image", "mime_type"),
    [
        (png(30, 20), "image/png"),
        (jpeg(300, 200), "image/jpeg"),
        (webp_lossy(320, 240), "image/webp"),
    ],
)
def test_type_and_size_are_read_from_the_image(
    make_client: Any, kit: Any, api: Any, image: bytes, mime_type: str
) -> None:
    api.mock(return_value=kit.success(image))
    result = client_for(make_client, kit).generate("x")
    assert result.mime_type == mime_type
    assert (result.width, result.height) == __import__("aigen._images", fromlist=["x"]).image_size(
        image
    )


def test_seed_is_reported_only_where_the_provider_takes_one(
    make_client: Any, kit: Any, api: Any
) -> None:
    api.mock(return_value=kit.success())
    result = client_for(make_client, kit).generate("x", seed=0)
    expected = 0 if client_for(make_client, kit).provider.takes_seed else None
    assert result.seed == expected


# -- never retried ---------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["prompt", "output"])
def test_safety_refusal_is_content_policy_error_never_retried(
    make_client: Any, kit: Any, api: Any, stage: str, fake_time: FakeTime
) -> None:
    api.mock(return_value=kit.prompt_blocked() if stage == "prompt" else kit.output_blocked())
    with pytest.raises(aigen.ContentPolicyError) as caught:
        client_for(make_client, kit).generate("x")
    error = caught.value
    assert error.stage == stage
    assert error.reason == (kit.blocked_reason if stage == "prompt" else kit.output_blocked_reason)
    assert error.categories == kit.blocked_categories[stage]
    assert error.generation_id is not None
    assert (error.attempts, api.call_count, fake_time.sleeps) == (1, 1, [])


@pytest.mark.parametrize(
    ("answer", "error_class"),
    [
        ("quota_exhausted", aigen.QuotaExceededError),
        ("bad_key", aigen.AuthenticationError),
        ("not_found", aigen.NotFoundError),
        ("bad_request", aigen.BadRequestError),
    ],
)
def test_errors_waiting_cannot_fix_are_raised_at_once(
    make_client: Any,
    kit: Any,
    api: Any,
    answer: str,
    error_class: type[aigen.APIError],
    fake_time: FakeTime,
) -> None:
    api.mock(return_value=getattr(kit, answer)())
    with pytest.raises(error_class) as caught:
        client_for(make_client, kit).generate("x")
    assert type(caught.value) is error_class
    assert caught.value.provider == kit.name
    assert (caught.value.attempts, api.call_count, fake_time.sleeps) == (1, 1, [])


# -- retried ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_transient_server_errors_are_retried(
    make_client: Any, kit: Any, api: Any, status: int, fake_time: FakeTime
) -> None:
    api.mock(side_effect=[kit.server_error(status), kit.server_error(status), kit.success()])
    result = client_for(make_client, kit).generate("x")
    assert result.attempts == 3
    assert len(fake_time.sleeps) == 2
    assert 1.0 <= fake_time.sleeps[0] <= 1.25
    assert 2.0 <= fake_time.sleeps[1] <= 2.5


def test_retries_run_out_with_the_last_error(make_client: Any, kit: Any, api: Any) -> None:
    api.mock(return_value=kit.server_error(503))
    with pytest.raises(aigen.ServerError) as caught:
        client_for(make_client, kit).generate("x")
    assert caught.value.attempts == 3
    assert api.call_count == 3


def test_the_providers_own_rate_limit_hint_is_obeyed(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(side_effect=[kit.rate_limited(7.5), kit.success()])
    result = client_for(make_client, kit).generate("x")
    assert result.attempts == 2
    assert fake_time.sleeps == [7.5]


@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
def test_standard_hint_headers_are_obeyed_for_every_provider(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime, header: str
) -> None:
    value = "12" if header == "retry-after" else "12000"
    api.mock(side_effect=[kit.server_error(503, headers={header: value}), kit.success()])
    client_for(make_client, kit).generate("x")
    assert fake_time.sleeps == [12.0]


def test_hint_above_max_retry_after_raises_at_once(
    make_client: Any, kit: Any, api: Any, fake_time: FakeTime
) -> None:
    api.mock(return_value=kit.rate_limited(300))
    with pytest.raises(aigen.RateLimitError) as caught:
        client_for(make_client, kit).generate("x")
    assert caught.value.retry_after == 300
    assert (api.call_count, fake_time.sleeps) == (1, [])


def test_connection_errors_are_retried_then_typed(make_client: Any, kit: Any, api: Any) -> None:
    api.mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(aigen.APIConnectionError) as caught:
        client_for(make_client, kit).generate("x")
    assert caught.value.attempts == 3
    assert kit.name in caught.value.message


def test_timeouts_are_retried_then_typed(make_client: Any, kit: Any, api: Any) -> None:
    api.mock(side_effect=[httpx.ReadTimeout("slow"), kit.success()])
    assert client_for(make_client, kit).generate("x").attempts == 2
    api.mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(aigen.APITimeoutError):
        client_for(make_client, kit).generate("x")


# -- malformed answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "match"),
    [("%%% not base64 %%%", "not valid base64"), ("aGVsbG8gd29ybGQ=", "not a readable PNG")],
)
def test_bad_image_payload_is_generation_error(
    make_client: Any, kit: Any, api: Any, payload: str, match: str
) -> None:
    api.mock(return_value=kit.image_payload(payload))
    with pytest.raises(aigen.GenerationError, match=match) as caught:
        client_for(make_client, kit).generate("x")
    assert type(caught.value) is aigen.GenerationError
    assert api.call_count == 1


@pytest.mark.parametrize(
    "content", [b"<html>502 from a proxy</html>", b"", b"[]", b'{"unexpected": true}']
)
def test_malformed_success_body_is_generation_error(
    make_client: Any, kit: Any, api: Any, content: bytes
) -> None:
    api.mock(return_value=httpx.Response(200, content=content))
    with pytest.raises(aigen.GenerationError) as caught:
        client_for(make_client, kit).generate("x")
    assert type(caught.value) is aigen.GenerationError
    assert kit.name in caught.value.message


# -- secrets ---------------------------------------------------------------------------


def test_the_key_is_never_logged_or_shown(
    make_client: Any, kit: Any, api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = httpx.Response(400, json={"error": {"message": f"bad key {API_KEY}", "code": "x"}})
    api.mock(side_effect=[kit.server_error(503), httpx.ConnectError(f"oops {API_KEY}"), echo])
    client = client_for(make_client, kit)
    with pytest.raises(aigen.GenerationError) as caught:
        client.generate("x")
    assert API_KEY not in repr(client.target)
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(getattr(caught.value, "body", ""))
    assert API_KEY not in caplog.text


def test_a_short_placeholder_key_does_not_garble_messages(
    make_client: Any, kit: Any, api: Any
) -> None:
    # Redacting a one-letter "key" would replace every "k" in every message.
    api.mock(side_effect=httpx.ConnectError("Name or service not known"))
    with pytest.raises(aigen.APIConnectionError) as caught:
        client_for(make_client, kit, api_key="k", max_retries=0).generate("x")
    assert "not known" in str(caught.value)
    assert kit.base_url in str(caught.value)


@pytest.mark.parametrize("status", [999, 600, 499, 302])
def test_an_unknown_status_is_an_api_error_not_a_server_error(
    make_client: Any, kit: Any, api: Any, status: int
) -> None:
    """Only 500-599 is a server's own trouble; 999 is a status nobody defined."""
    api.mock(return_value=kit.server_error(status))
    with pytest.raises(aigen.APIError) as caught:
        client_for(make_client, kit).generate("x")
    assert type(caught.value) is aigen.APIError
    assert caught.value.status_code == status
    assert (caught.value.attempts, api.call_count) == (1, 1)
