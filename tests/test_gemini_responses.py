"""Gemini-specific answer shapes (WIRE.md A.3, A.4, B.2), read by both clients."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import aigen

from . import gemini_bodies as gb
from .images import jpeg, png, webp_lossless

BASE = "https://generativelanguage.googleapis.com"


@pytest.fixture
def gemini() -> Any:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router.post(gb.PATH)


def test_response_fields(make_client: Any, gemini: Any) -> None:
    image = png(64, 32)
    gemini.mock(return_value=httpx.Response(200, json=gb.image_answer(image)))
    client = make_client()

    result = client.generate("A cute banana", width=512, height=512, seed=7)

    assert result.image_data == image
    assert (result.mime_type, result.width, result.height) == ("image/png", 64, 32)
    assert uuid.UUID(result.generation_id).version == 4
    assert result.seed == 7
    assert result.thought_signature == b"sig-image"
    assert result.parts == (
        aigen.TurnPart(text="Here is your image.", thought_signature=b"sig-text"),
        aigen.TurnPart(main_image=True, thought_signature=b"sig-image"),
    )
    assert result.text == "Here is your image."
    assert result.model == gb.MODEL
    assert result.provider == "gemini"
    assert result.request_id == "resp-123"
    assert result.usage.input_tokens == 12
    assert result.usage.output_tokens == 1290
    assert result.usage.total_tokens == 1302
    assert result.attempts == 1
    assert result.finish_reason == "STOP"
    assert result.inference_time_ms >= 0
    assert result.total_time_ms >= result.inference_time_ms


def test_generation_ids_are_unique(make_client: Any, gemini: Any) -> None:
    gemini.mock(return_value=httpx.Response(200, json=gb.image_answer()))
    client = make_client()
    ids = {client.generate("x").generation_id for _ in range(5)}
    assert len(ids) == 5


def test_request_object_and_keywords_are_the_same_call(make_client: Any, gemini: Any) -> None:
    gemini.mock(return_value=httpx.Response(200, json=gb.image_answer()))
    client = make_client()
    client.generate("A fox", width=640, height=480, seed=3)
    client.generate(aigen.GenerationRequest(prompt="A fox", width=640, height=480, seed=3))
    first, second = (call.request.content for call in gemini.calls)
    assert first == second


def test_request_fields_can_be_overridden_by_keywords(make_client: Any, gemini: Any) -> None:
    gemini.mock(return_value=httpx.Response(200, json=gb.image_answer()))
    client = make_client()
    result = client.generate(aigen.GenerationRequest(prompt="A fox", seed=1), seed=2)
    assert result.seed == 2


@pytest.mark.parametrize(
    ("image", "mime_type", "size"),
    [
        (png(300, 200), "image/png", (300, 200)),
        (jpeg(1024, 768), "image/jpeg", (1024, 768)),
        (webp_lossless(640, 480), "image/webp", (640, 480)),
    ],
)
def test_mime_type_and_size_come_from_the_image_not_the_label(
    make_client: Any, gemini: Any, image: bytes, mime_type: str, size: tuple[int, int]
) -> None:
    # Gemini labels everything image/png; the bytes say otherwise.
    gemini.mock(
        return_value=httpx.Response(200, json=gb.image_answer(image, mime_type="image/png"))
    )
    result = make_client().generate("x")
    assert result.mime_type == mime_type
    assert (result.width, result.height) == size


def test_image_first_answer_keeps_its_order(make_client: Any, gemini: Any) -> None:
    gemini.mock(return_value=httpx.Response(200, json=gb.image_answer(image_first=True)))
    result = make_client().generate("x")
    assert result.thought_signature == b"sig-image"
    assert result.parts == (  # kept as sent, to be replayed as sent
        aigen.TurnPart(main_image=True, thought_signature=b"sig-image"),
        aigen.TurnPart(text="Here is your image.", thought_signature=b"sig-text"),
    )


def test_save_writes_the_bytes(make_client: Any, gemini: Any, tmp_path: Path) -> None:
    image = png(10, 10)
    gemini.mock(return_value=httpx.Response(200, json=gb.image_answer(image)))
    result = make_client().generate("x")
    assert result.save(tmp_path / "a.png").read_bytes() == image
    assert result.save(str(tmp_path / "b.png")) == tmp_path / "b.png"


def test_thought_parts_are_skipped_and_the_last_image_wins(make_client: Any, gemini: Any) -> None:
    final = png(20, 10)
    body = gb.image_answer(final)
    parts = body["candidates"][0]["content"]["parts"]
    parts.insert(0, {"text": "thinking...", "thought": True})
    parts.insert(
        1, {"inlineData": {"mimeType": "image/png", "data": gb.b64(png(5, 5))}, "thought": True}
    )
    gemini.mock(return_value=httpx.Response(200, json=body))
    result = make_client().generate("x")
    assert result.image_data == final
    assert result.text == "Here is your image."


# -- content safety --------------------------------------------------------------------


def test_blocked_prompt_is_content_policy_error_and_not_retried(
    make_client: Any, gemini: Any
) -> None:
    gemini.mock(return_value=httpx.Response(200, json=gb.prompt_blocked()))
    with pytest.raises(aigen.ContentPolicyError) as caught:
        make_client().generate("something bad")
    error = caught.value
    assert error.stage == "prompt"
    assert error.reason == "PROHIBITED_CONTENT"
    assert error.categories == ["HARM_CATEGORY_DANGEROUS_CONTENT"]
    assert error.request_id == "resp-blocked"
    assert error.attempts == 1
    assert gemini.call_count == 1


@pytest.mark.parametrize(
    "reason",
    [
        "IMAGE_SAFETY",
        "SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "image_safety",
    ],
)
def test_blocked_output_is_content_policy_error_and_not_retried(
    make_client: Any, gemini: Any, reason: str
) -> None:
    gemini.mock(return_value=httpx.Response(200, json=gb.output_blocked(reason)))
    with pytest.raises(aigen.ContentPolicyError) as caught:
        make_client().generate("x")
    assert caught.value.stage == "output"
    assert caught.value.reason == reason.upper()
    assert "not be charged" in caught.value.message
    assert gemini.call_count == 1


def test_safety_400_is_content_policy_error(make_client: Any, gemini: Any) -> None:
    body = gb.error(400, "INVALID_ARGUMENT", "The request was blocked by safety filters.")
    gemini.mock(return_value=httpx.Response(400, json=body))
    with pytest.raises(aigen.ContentPolicyError) as caught:
        make_client().generate("x")
    assert caught.value.stage == "prompt"
    assert gemini.call_count == 1


@pytest.mark.parametrize("reason", ["STOP", "NO_IMAGE", "IMAGE_OTHER", "SOMETHING_NEW"])
def test_text_only_answer_is_no_image_error_with_the_text(
    make_client: Any, gemini: Any, reason: str
) -> None:
    gemini.mock(return_value=httpx.Response(200, json=gb.text_only("Which colour?", reason)))
    with pytest.raises(aigen.NoImageError) as caught:
        make_client().generate("x")
    assert caught.value.text == "Which colour?"
    assert caught.value.finish_reason == reason
    assert gemini.call_count == 1


def test_missing_thought_signature_finish_reason_says_what_to_fix(
    make_client: Any, gemini: Any
) -> None:
    gemini.mock(
        return_value=httpx.Response(200, json=gb.text_only("", "MISSING_THOUGHT_SIGNATURE"))
    )
    with pytest.raises(aigen.GenerationError, match="thought signature"):
        make_client().generate("x")


# -- malformed answers -----------------------------------------------------------------


def _answer_with_data(data: str | None) -> bytes:
    inline: dict[str, Any] = {"mimeType": "image/png"}
    if data is not None:
        inline["data"] = data
    return json.dumps({"candidates": [{"content": {"parts": [{"inlineData": inline}]}}]}).encode()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b"{}", "without candidates"),
        (b'{"candidates": []}', "without candidates"),
        (_answer_with_data("!!!not base64!!!"), "not valid base64"),
        (_answer_with_data("aGVsbG8gd29ybGQ="), "not a readable PNG"),
        (_answer_with_data(None), "no image data"),
    ],
)
def test_malformed_answer_is_generation_error_saying_what_was_wrong(
    make_client: Any, gemini: Any, content: bytes, match: str
) -> None:
    gemini.mock(return_value=httpx.Response(200, content=content))
    with pytest.raises(aigen.GenerationError, match=match) as caught:
        make_client().generate("x")
    assert type(caught.value) is aigen.GenerationError
    assert caught.value.generation_id is not None
    assert gemini.call_count == 1


# -- API errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error_class"),
    [
        (400, gb.key_invalid(), aigen.AuthenticationError),
        (
            400,
            gb.error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
            aigen.BadRequestError,
        ),
        (401, gb.error(401, "UNAUTHENTICATED", "no"), aigen.AuthenticationError),
        (
            403,
            gb.error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
            aigen.AuthenticationError,
        ),
        (
            404,
            gb.error(404, "NOT_FOUND", "models/x is not found for API version v1beta"),
            aigen.NotFoundError,
        ),
        (422, gb.error(422, "INVALID_ARGUMENT", "bad"), aigen.BadRequestError),
        (
            429,
            gb.rate_limited(quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"),
            aigen.QuotaExceededError,
        ),
        (429, gb.rate_limited(value="0"), aigen.QuotaExceededError),
        (
            402,
            gb.error(402, "RESOURCE_EXHAUSTED", "Prepaid credit exhausted."),
            aigen.QuotaExceededError,
        ),
        (501, gb.error(501, "UNIMPLEMENTED", "no"), aigen.ServerError),
    ],
)
def test_errors_that_are_never_retried(
    make_client: Any, gemini: Any, status: int, body: dict[str, Any], error_class: type[Exception]
) -> None:
    gemini.mock(return_value=httpx.Response(status, json=body, headers={"x-request-id": "req-9"}))
    with pytest.raises(error_class) as caught:
        make_client().generate("x")
    error = caught.value
    assert isinstance(error, aigen.APIError)
    assert type(error) is error_class
    assert error.status_code == status
    assert error.provider == "gemini"
    assert error.request_id == "req-9"
    assert error.body == body
    assert error.attempts == 1
    assert gemini.call_count == 1


def test_not_found_names_the_model(make_client: Any, gemini: Any) -> None:
    gemini.mock(return_value=httpx.Response(404, json=gb.error(404, "NOT_FOUND", "not found")))
    with pytest.raises(aigen.NotFoundError, match=r"gemini-2\.5-flash-image"):
        make_client().generate("x")


def test_auth_error_says_which_variable(make_client: Any, gemini: Any) -> None:
    gemini.mock(return_value=httpx.Response(400, json=gb.key_invalid()))
    with pytest.raises(aigen.AuthenticationError, match="GEMINI_API_KEY"):
        make_client().generate("x")


def test_non_json_error_body_is_described(make_client: Any, gemini: Any) -> None:
    gemini.mock(return_value=httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(aigen.ServerError, match="Bad Gateway") as caught:
        make_client(max_retries=0).generate("x")
    assert caught.value.body == "<html>Bad Gateway</html>"


# -- secrets and logs ------------------------------------------------------------------


def test_every_call_logs_its_generation_id(
    make_client: Any, gemini: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gemini.mock(return_value=httpx.Response(200, json=gb.image_answer()))
    caplog.set_level(logging.DEBUG, logger="aigen")
    result = make_client().generate("x")
    mine = [
        r
        for r in caplog.records
        if r.name == "aigen" and getattr(r, "generation_id", None) == result.generation_id
    ]
    assert len(mine) >= 2  # sent, and finished
    assert any("1302" in r.getMessage() or "total_tokens=1302" in r.getMessage() for r in mine)
