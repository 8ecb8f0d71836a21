"""The pydantic models: what they refuse (before any request, saying how to fix it), round trips."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pydantic
import pytest
import respx

from aigen import GenerationRequest, GenerationResponse, Turn, TurnPart, Usage

from . import gemini_bodies as gb
from .images import jpeg, png, webp_lossy

BASE = "https://generativelanguage.googleapis.com"


@pytest.fixture
def gemini() -> Any:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        route = router.post(gb.PATH)
        route.mock(return_value=httpx.Response(200, json=gb.image_answer()))
        yield route


def first_error(caught: pytest.ExceptionInfo[pydantic.ValidationError]) -> dict[str, Any]:
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    error: dict[str, Any] = dict(errors[0])
    return error


# -- GenerationRequest: refused before any request -------------------------------------

INVALID_REQUESTS: list[tuple[dict[str, Any], str, tuple[str, ...]]] = [
    # (fields beside the prompt, field at fault, words the message must contain)
    ({"prompt": ""}, "prompt", ("prompt is empty", "describe")),
    ({"prompt": "   \n\t "}, "prompt", ("prompt is empty", "describe")),
    ({"width": 512}, "", ("width", "height", "both")),
    ({"height": 512}, "", ("width", "height", "both")),
    ({"width": 0, "height": 512}, "width", ("greater than 0",)),
    ({"width": -5, "height": 512}, "width", ("greater than 0",)),
    ({"width": 512, "height": 0}, "height", ("greater than 0",)),
    ({"width": 100_000, "height": 512}, "width", ("less than or equal",)),
    ({"seed": -1}, "seed", ("greater than or equal to 0",)),
    ({"seed": 2**31}, "seed", ("less than or equal to 2147483647",)),
    ({"input_image": b"just some text, not a picture"}, "input_image", ("PNG, JPEG or WebP",)),
    ({"input_image": b""}, "input_image", ("PNG, JPEG or WebP",)),
    ({"widht": 512}, "widht", ("Extra inputs are not permitted",)),
    ({"model": "  "}, "model", ("model is empty",)),
]


@pytest.mark.parametrize(("fields", "field", "words"), INVALID_REQUESTS)
def test_invalid_request_is_refused_saying_what_is_wrong(
    fields: dict[str, Any], field: str, words: tuple[str, ...]
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        GenerationRequest(**{"prompt": "A fox", **fields})
    error = first_error(caught)
    assert ".".join(str(part) for part in error["loc"]) == field
    for word in words:
        assert word in error["msg"]
    if field:
        assert field in str(caught.value)  # the message names the field


@pytest.mark.parametrize(("fields", "field", "words"), INVALID_REQUESTS)
def test_invalid_request_is_refused_before_any_request(
    make_client: Any, gemini: Any, fields: dict[str, Any], field: str, words: tuple[str, ...]
) -> None:
    prompt = fields.get("prompt", "A fox")
    keywords = {k: v for k, v in fields.items() if k != "prompt"}
    with pytest.raises(pydantic.ValidationError) as caught:
        make_client().generate(prompt, **keywords)
    assert all(word in str(caught.value) for word in words)
    assert not gemini.called


def test_input_image_error_says_how_to_fix_it() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        GenerationRequest(prompt="A fox", input_image=b"hello world")
    message = first_error(caught)["msg"]
    assert "68 65 6c 6c 6f" in message  # shows the first bytes it saw
    assert "read_bytes()" in message  # and what to pass instead


def test_valid_request_edges() -> None:
    request = GenerationRequest(prompt="A fox", width=1, height=16_384, seed=0)
    assert (request.width, request.height, request.seed) == (1, 16_384, 0)
    assert GenerationRequest(prompt="x", seed=2**31 - 1).seed == 2**31 - 1
    assert GenerationRequest(prompt="x", input_image=jpeg()).input_mime_type == "image/jpeg"


def test_request_is_immutable() -> None:
    request = GenerationRequest(prompt="A fox")
    with pytest.raises(pydantic.ValidationError):
        request.prompt = "A dog"  # type: ignore[misc]


# -- Turn ------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["user", "model"])
def test_turn_needs_text_or_an_image(role: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Turn(role=role)  # type: ignore[arg-type]
    assert f"a {role} turn needs text, image_data or both" in first_error(caught)["msg"]
    with pytest.raises(pydantic.ValidationError):
        Turn(role=role, text="")  # type: ignore[arg-type]


def test_turn_role_must_be_user_or_model() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        Turn(role="assistant", text="hi")  # type: ignore[arg-type]
    assert first_error(caught)["loc"] == ("role",)


def _png_with_base64_specials() -> bytes:
    """A PNG whose standard base64 has '+' or '/', so URL-safe text differs from it."""
    for red in range(256):
        image = png(5, 3, (red, 7, 250))
        if {"+", "/"} & set(base64.b64encode(image).decode()):
            return image
    raise AssertionError("no PNG with '+' or '/' in its base64")


IMAGE = _png_with_base64_specials()


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(IMAGE).decode(),
        base64.urlsafe_b64encode(IMAGE).decode(),
        base64.urlsafe_b64encode(IMAGE).decode().rstrip("="),
        base64.b64encode(IMAGE).decode().rstrip("="),
        # What `base64 image.png` and MIME give: lines of 76 characters.
        base64.encodebytes(IMAGE).decode(),
    ],
    ids=["standard", "urlsafe", "urlsafe-unpadded", "standard-unpadded", "mime-wrapped"],
)
def test_turn_image_data_takes_base64_text(text: str) -> None:
    turn = Turn(role="user", image_data=text)  # type: ignore[arg-type]
    assert turn.image_data == IMAGE
    assert turn.mime_type == "image/png"


def test_turn_image_data_that_is_not_base64_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="base64"):
        Turn(role="user", image_data="this is not base64 at all!")  # type: ignore[arg-type]


def test_turn_image_data_base64_of_a_non_image_is_refused() -> None:
    text = base64.b64encode(b"plain text, not an image").decode()
    with pytest.raises(pydantic.ValidationError, match="PNG, JPEG or WebP"):
        Turn(role="user", image_data=text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image", "label", "expected"),
    [
        (jpeg(), "image/png", "image/jpeg"),
        (png(), "image/jpeg", "image/png"),
        (webp_lossy(), None, "image/webp"),
        (png(), "image/png", "image/png"),
    ],
)
def test_turn_mime_type_is_read_from_the_bytes(
    image: bytes, label: str | None, expected: str
) -> None:
    assert Turn(role="model", image_data=image, mime_type=label).mime_type == expected


def test_turn_json_round_trip() -> None:
    turn = Turn(
        role="model",
        text="Here.",
        image_data=IMAGE,
        thought_signature=b"\x00\xffsig",
        parts=(
            TurnPart(main_image=True, thought_signature=b"\x00\xffsig"),
            TurnPart(text="Here.", thought_signature=b"t-sig"),
        ),
    )
    dumped = turn.model_dump_json()
    assert json.loads(dumped)["image_data"] == base64.b64encode(IMAGE).decode()
    assert Turn.model_validate_json(dumped) == turn


# -- GenerationResponse ----------------------------------------------------------------


def make_response(**overrides: Any) -> GenerationResponse:
    fields: dict[str, Any] = {
        "image_data": IMAGE,
        "mime_type": "image/png",
        "width": 5,
        "height": 3,
        "generation_id": "4f3c2b1a-0000-4000-8000-000000000000",
        "seed": 7,
        "inference_time_ms": 812.5,
        "total_time_ms": 1900.0,
        "thought_signature": b"sig-image",
        "parts": (
            TurnPart(text="Here is your image.", thought_signature=b"sig-text"),
            TurnPart(main_image=True, thought_signature=b"sig-image"),
        ),
        "text": "Here is your image.",
        "model": "gemini-2.5-flash-image",
        "provider": "gemini",
        "request_id": "resp-123",
        "usage": Usage(input_tokens=12, output_tokens=1290, total_tokens=1302),
        "finish_reason": "STOP",
        "attempts": 2,
    }
    fields.update(overrides)
    return GenerationResponse(**fields)


def test_response_repr_does_not_dump_the_image() -> None:
    big = png(300, 300)
    response = make_response(image_data=big, thought_signature=b"SECRET-SIGNATURE")
    text = repr(response)
    assert len(text) < 1000
    assert "\\x89PNG" not in text
    assert "iVBOR" not in text  # nor its base64
    assert "SECRET-SIGNATURE" not in text
    assert "gemini-2.5-flash-image" in text  # the useful fields are there
    assert "image/png" in text
    assert "\\x89PNG" not in str(response)


def test_response_json_round_trip() -> None:
    response = make_response()
    dumped = response.model_dump_json()
    data = json.loads(dumped)
    assert data["image_data"] == base64.b64encode(IMAGE).decode()
    assert data["thought_signature"] == base64.b64encode(b"sig-image").decode()
    assert data["usage"]["total_tokens"] == 1302
    restored = GenerationResponse.model_validate_json(dumped)
    assert restored == response
    assert restored.image_data == IMAGE


def test_response_as_turn_keeps_image_and_signatures() -> None:
    turn = make_response().as_turn()
    assert turn.role == "model"
    assert turn.image_data == IMAGE
    assert turn.thought_signature == b"sig-image"
    assert turn.parts == (
        TurnPart(text="Here is your image.", thought_signature=b"sig-text"),
        TurnPart(main_image=True, thought_signature=b"sig-image"),
    )
    assert turn.text == "Here is your image."


@pytest.mark.parametrize(
    "fields",
    [{}, {"text": "a", "main_image": True}, {"image_data": b"not an image"}],
)
def test_turn_part_holds_exactly_one_valid_thing(fields: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        TurnPart(**fields)


def test_turn_part_cannot_point_at_a_missing_main_image() -> None:
    with pytest.raises(pydantic.ValidationError, match="main image"):
        Turn(role="model", text="hi", parts=(TurnPart(main_image=True),))


def test_turn_parts_must_place_its_image() -> None:
    with pytest.raises(pydantic.ValidationError, match="main_image=True"):
        Turn(role="model", text="hi", image_data=png(), parts=(TurnPart(text="hi"),))


# -- no bools, floats or text where a whole number is wanted (issue 11) ---------------------


@pytest.mark.parametrize("field", ["width", "height", "seed"])
@pytest.mark.parametrize("value", [True, False, "512", 512.0, b"512"], ids=repr)
def test_whole_number_fields_are_strict(field: str, value: object) -> None:
    sizes: dict[str, object] = {"width": 512, "height": 512}
    with pytest.raises(pydantic.ValidationError) as caught:
        GenerationRequest(prompt="x", **{**sizes, field: value})
    message = str(caught.value)
    assert field in message
    assert "whole number" in message


def test_rules_preamble_takes_a_bool_only() -> None:
    with pytest.raises(pydantic.ValidationError, match="rules_preamble"):
        GenerationRequest(prompt="x", rules_preamble="no")  # type: ignore[arg-type]


def test_whole_numbers_still_round_trip_through_json() -> None:
    request = GenerationRequest(prompt="x", width=640, height=480, seed=7)
    assert GenerationRequest.model_validate_json(request.model_dump_json()) == request
