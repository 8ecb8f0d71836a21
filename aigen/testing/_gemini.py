"""Gemini's `generateContent`, as the fake speaks it (WIRE.md A and B)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._images import sniff_mime_type
from . import _gemini_bodies as gb
from ._dialect import (
    DRAWN_TYPES,
    Surroundings,
    b64,
    common_malformed,
    hint_headers,
    picture,
    refuse_details,
    seconds_text,
    shown_prompt,
)
from ._gemini_bodies import gemini_error
from ._outcomes import Reply, Situation, error
from ._recording import RecordedRequest

__all__ = ["GEMINI_SIZES", "GeminiDialect", "gemini_error"]

MODEL = "gemini-2.5-flash-image"
# Output pixels per aspect ratio of gemini-2.5-flash-image (WIRE.md A.2).
GEMINI_SIZES: Mapping[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
_SUCCESS_DETAILS = frozenset({"text", "image_signature", "text_signature", "image_first"})


class GeminiDialect:
    """Gemini's `generateContent` (WIRE.md A and B).

    Checks: an unknown path is a 404 and a method other than POST a 405; a missing key
    (neither `x-goog-api-key` nor `?key=`) is a 401; a key other than the fake's
    `api_key` (when one is set) is Gemini's 400 `API_KEY_INVALID`; a body that is not a
    JSON object is a 400. Errors are `google.rpc.Status` bodies; no answer carries a
    `Retry-After` header unless the script adds one.
    """

    name = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"
    PATH = re.compile(r"^/(?P<version>v1|v1beta|v1alpha)/models/(?P<model>[^/:]+):generateContent$")

    def model_of(self, request: RecordedRequest) -> str | None:
        """The model named in the path."""
        match = self.PATH.match(request.path)
        return match.group("model") if match else None

    def check(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        """Path, method, key and a JSON object body, as Gemini checks them first."""
        if self.PATH.match(request.path) is None:
            return gemini_error(404, "NOT_FOUND", "Not found: no such method or path.")
        if request.method != "POST":
            return gemini_error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here.")
        key = request.headers.get("x-goog-api-key") or next(
            iter(request.query.get("key", [])), None
        )
        if not key:
            return gemini_error(401, "UNAUTHENTICATED", "Request is missing an API key.")
        if api_key is not None and key != api_key:
            return error(400, gb.key_invalid())
        if not isinstance(request.json, dict):
            return gemini_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        return None

    def refusal(self, situation: Situation) -> str | None:
        """Gemini says every situation but OpenAI's `empty_data`; details only on success."""
        if situation.kind == "malformed" and situation.flaw == "empty_data":
            return "gemini has no data[]: script malformed('no_candidates') for an empty answer"
        allowed = _SUCCESS_DETAILS if situation.kind == "success" else ()
        drawn = situation.kind == "success" and situation.image is None
        if drawn and situation.mime_type not in (None, *DRAWN_TYPES):
            return f"the fakes draw {' and '.join(DRAWN_TYPES)}, not {situation.mime_type}"
        return refuse_details(situation, allowed, self.name)

    def render(self, situation: Situation, request: RecordedRequest, around: Surroundings) -> Reply:
        """`situation` as Gemini says it."""
        kind = situation.kind
        model = self.model_of(request) or MODEL
        response_id = situation.request_id or gb.response_id()
        if kind == "success":
            image, mime_type = self._image(situation, request, around)
            return Reply(200, self._answer(situation, b64(image), mime_type, model, response_id))
        if kind == "text_only":
            parts = [{"text": situation.text or ""}]
            return Reply(200, gb.candidate(parts, "STOP", model, response_id, tokens=24))
        if kind == "malformed":
            drawn = Situation("success")

            def body_with(data: str) -> Mapping[str, object]:
                return self._answer(drawn, data, "image/png", model, response_id)

            reply = common_malformed(situation, body_with)
            if reply is not None:
                return reply
            usage = {"promptTokenCount": 12, "totalTokenCount": 12}
            return Reply(
                200, {"usageMetadata": usage, "modelVersion": model, "responseId": response_id}
            )
        if kind == "content_blocked":
            if situation.stage == "output":
                body = gb.candidate(None, "IMAGE_SAFETY", model, response_id, tokens=0)
                body["candidates"][0]["finishMessage"] = (
                    "Unable to show the generated image. You will not be charged for "
                    "blocked images."
                )
                return Reply(200, body)
            return Reply(200, gb.prompt_blocked(model, response_id))
        if kind == "bad_key":
            return Reply(400, gb.key_invalid())
        if kind == "rate_limited":
            return self._rate_limited(situation, around)
        if kind == "quota_exhausted":
            details = (gb.quota_failure(gb.PER_DAY, "0"), gb.retry_info(30))
            return gemini_error(429, "RESOURCE_EXHAUSTED", gb.EXHAUSTED, *details)
        status = situation.status or 500
        grpc_status, message = {
            "overloaded": ("UNAVAILABLE", "The model is overloaded. Please try again later."),
            "bad_request": ("INVALID_ARGUMENT", "Request contains an invalid argument."),
            "not_found": (
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, "
                "or is not supported for generateContent.",
            ),
        }.get(kind, gb.SERVER_ERRORS.get(status, ("INTERNAL", "An internal error.")))
        return gemini_error(status, grpc_status, situation.message or message)

    def finish(self, reply: Reply, request: RecordedRequest) -> Reply:
        """Gemini adds no headers of its own."""
        return reply

    def request_id(self, reply: Reply) -> str | None:
        """The body's `responseId` (errors have none)."""
        body = reply.body
        found = body.get("responseId") if isinstance(body, dict) else None
        return found if isinstance(found, str) else None

    # -- helpers ---------------------------------------------------------------------

    def _image(
        self, situation: Situation, request: RecordedRequest, around: Surroundings
    ) -> tuple[bytes, str]:
        if situation.image is not None:
            label = situation.mime_type or sniff_mime_type(situation.image) or "image/png"
            return situation.image, label
        mime_type = situation.mime_type or around.mime_type
        width, height = self._size(request)
        return picture(shown_prompt(_prompt_of(request)), width, height, mime_type), mime_type

    @staticmethod
    def _size(request: RecordedRequest) -> tuple[int, int]:
        """The pixels of the requested aspect ratio (camelCase or snake_case keys)."""
        body = request.json if isinstance(request.json, dict) else {}
        config = _either(body, "generationConfig", "generation_config")
        image_config = _either(config, "imageConfig", "image_config")
        ratio = image_config.get("aspectRatio", image_config.get("aspect_ratio"))
        return GEMINI_SIZES.get(ratio if isinstance(ratio, str) else "1:1", (1024, 1024))

    @staticmethod
    def _answer(
        situation: Situation, data: str, mime_type: str, model: str, response_id: str
    ) -> dict[str, Any]:
        """A 200 with a text part and an image part, each with a thought signature."""
        details = situation.details
        image_part: dict[str, Any] = {"inlineData": {"mimeType": mime_type, "data": data}}
        gb.sign(image_part, details.get("image_signature", b"sig-image"))
        parts = [image_part]
        text = details.get("text", "Here is your image.")
        if text is not None:
            text_part: dict[str, Any] = {"text": str(text)}
            gb.sign(text_part, details.get("text_signature", b"sig-text"))
            parts = (
                [image_part, text_part] if details.get("image_first") else [text_part, image_part]
            )
        return gb.candidate(parts, "STOP", model, response_id, tokens=1290)

    def _rate_limited(self, situation: Situation, around: Surroundings) -> Reply:
        hint, style = situation.hint, situation.hint_style
        details: list[dict[str, Any]] = [gb.quota_failure(gb.PER_MINUTE, "10")]
        message = situation.message or gb.EXHAUSTED
        if hint is not None and style in ("native", "retry_info"):
            details.append(gb.retry_info(hint))
        elif hint is not None and style == "message":
            message = f"{message} Please retry in {seconds_text(hint)}s."
        headers = hint_headers(situation, around.now)
        return gemini_error(429, "RESOURCE_EXHAUSTED", message, *details, headers=headers)


def _prompt_of(request: RecordedRequest) -> str:
    """The text of the last user turn (what the user asked for this time)."""
    body = request.json if isinstance(request.json, dict) else {}
    contents = body.get("contents")
    for content in reversed(contents if isinstance(contents, list) else []):
        if isinstance(content, dict) and content.get("role", "user") == "user":
            parts = content.get("parts")
            texts = [
                part["text"]
                for part in (parts if isinstance(parts, list) else [])
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
            return " ".join(texts)
    return ""


def _either(mapping: Mapping[str, object], camel: str, snake: str) -> Mapping[str, object]:
    found = mapping.get(camel, mapping.get(snake))
    return found if isinstance(found, dict) else {}
