"""OpenAI's Images API, as the fake speaks it (WIRE.md D): JSON generations, multipart edits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .._images import image_size, sniff_mime_type
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
from ._openai_checks import SIZE, check_request, incorrect_key, openai_error, openai_error_body
from ._outcomes import Reply, Situation
from ._recording import RecordedRequest

__all__ = ["OPENAI_RATE_LIMIT_HEADERS", "OpenAIDialect", "openai_error", "openai_error_body"]

# The sample values of OpenAI's rate-limit guide (WIRE.md D.7).
OPENAI_RATE_LIMIT_HEADERS: Mapping[str, str] = {
    "x-ratelimit-limit-requests": "60",
    "x-ratelimit-limit-tokens": "150000",
    "x-ratelimit-remaining-requests": "59",
    "x-ratelimit-remaining-tokens": "149984",
    "x-ratelimit-reset-requests": "1s",
    "x-ratelimit-reset-tokens": "6m0s",
}
# What `success(**details)` may set: the image item's revised prompt and top-level fields.
_SUCCESS_DETAILS = frozenset(
    {"revised_prompt", "created", "background", "output_format", "quality", "size", "usage"}
)
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


class OpenAIDialect:
    """OpenAI's Images API (WIRE.md D): JSON generations and multipart edits.

    Checks: a path other than `/v1/images/generations` or `/v1/images/edits`, or a
    method other than POST, is the 404 `Invalid URL`; a missing `Authorization: Bearer`
    is a 401, and a key other than the fake's `api_key` (when one is set) the 401
    `invalid_api_key` (the key masked, as OpenAI does). Generations need a JSON object,
    edits a `multipart/form-data` body with an `image` (or `image[]`) file; both need a
    `prompt`, take only the parameters OpenAI knows (gpt-image models refuse `seed` and
    `response_format`), and a `size` the model supports. Every answer carries an
    `x-request-id` (`req_` + 32 hex digits unless the script sets one), and the
    `rate_limit_headers` when set (on a 429, with the requests left at 0).
    """

    name = "openai"
    default_base_url = "https://api.openai.com"

    def __init__(self, *, rate_limit_headers: Mapping[str, str] | None = None) -> None:
        self.rate_limit_headers = dict(rate_limit_headers or {})

    def model_of(self, request: RecordedRequest) -> str | None:
        """The `model` field of the JSON body or the form."""
        model = request.fields.get("model")
        return model if isinstance(model, str) else None

    def check(self, request: RecordedRequest, api_key: str | None) -> Reply | None:
        """Path, method, key, body type and parameters, as OpenAI checks them first."""
        return check_request(request, api_key)

    def refusal(self, situation: Situation) -> str | None:
        """OpenAI never answers with text alone, has no candidates and no `RetryInfo`."""
        if situation.kind == "text_only":
            return (
                "OpenAI's Images API never answers with text instead of an image: script "
                "malformed('empty_data') for a 200 without an image, or content_blocked()"
            )
        if situation.kind == "malformed" and situation.flaw == "no_candidates":
            return "openai has no candidates: script malformed('empty_data') for an empty answer"
        if situation.kind == "rate_limited" and situation.hint_style == "retry_info":
            return "RetryInfo is Gemini's: OpenAI's own hint is style='native' (retry-after-ms)"
        drawn = situation.kind == "success" and situation.image is None
        if drawn and situation.mime_type not in (None, *DRAWN_TYPES):
            return f"the fakes draw {' and '.join(DRAWN_TYPES)}, not {situation.mime_type}"
        allowed = _SUCCESS_DETAILS if situation.kind == "success" else ()
        return refuse_details(situation, allowed, self.name)

    def render(self, situation: Situation, request: RecordedRequest, around: Surroundings) -> Reply:
        """`situation` as OpenAI says it."""
        kind = situation.kind
        if kind == "success":
            return self._success(situation, request, around)
        model = self.model_of(request) or "gpt-image-1"
        message = situation.message
        if kind == "malformed":
            reply = common_malformed(situation, lambda data: _image_body(data, around.now))
            return reply or Reply(200, {"created": int(around.now), "data": []})
        if kind == "rate_limited":
            return self._rate_limited(situation, model, around)
        if kind == "quota_exhausted":
            return openai_error(
                429,
                message
                or "You exceeded your current quota, please check your plan and billing details.",
                type="insufficient_quota",
                code="insufficient_quota",
            )
        if kind == "content_blocked":
            category = "violence" if situation.stage == "prompt" else "sexual"
            return openai_error(
                400,
                message
                or "Your request was rejected by the safety system. If you believe this is an "
                "error, contact us at help.openai.com and include the request ID "
                f"{uuid.uuid4()}. safety_violations=[{category}].",
                type="image_generation_user_error",
                code="moderation_blocked",
                moderation_details={
                    "moderation_stage": "input" if situation.stage == "prompt" else "output",
                    "categories": [category],
                },
            )
        if kind == "bad_key":
            key = request.headers.get("authorization", "").partition(" ")[2].strip()
            return openai_error(401, message or incorrect_key(key), code="invalid_api_key")
        if kind == "bad_request":
            return openai_error(
                400,
                message
                or "Invalid value: 'ultra'. Supported values are: 'low', 'medium', "
                "'high', and 'auto'.",
                code="invalid_value",
                param="quality",
            )
        if kind == "not_found":
            return openai_error(
                404,
                message or f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        status = situation.status or 500
        overloaded = "The engine is currently overloaded, please try again later."
        default = overloaded if status == 503 else _SERVER_ERROR
        return openai_error(status, message or default, type="server_error")

    def finish(self, reply: Reply, request: RecordedRequest) -> Reply:
        """Add `x-request-id`, `openai-version`, `openai-processing-ms`, the rate-limit headers."""
        headers = {
            **self.rate_limit_headers,
            "x-request-id": f"req_{uuid.uuid4().hex}",
            "openai-version": "2020-10-01",
            "openai-processing-ms": str(round(reply.delay * 1000)),
        }
        headers.update({name.lower(): value for name, value in reply.headers.items()})
        return replace(reply, headers=headers)

    def request_id(self, reply: Reply) -> str | None:
        """The `x-request-id` header."""
        return reply.headers.get("x-request-id")

    # -- helpers ---------------------------------------------------------------------

    def _success(
        self, situation: Situation, request: RecordedRequest, around: Surroundings
    ) -> Reply:
        fields = request.fields
        requested = SIZE.match(str(fields.get("size", "")))
        width, height = (int(requested[1]), int(requested[2])) if requested else (1024, 1024)
        if situation.image is not None:
            image = situation.image
        else:
            asked = f"image/{fields.get('output_format')}"
            mime_type = situation.mime_type or (asked if asked in DRAWN_TYPES else around.mime_type)
            prompt = shown_prompt(str(fields.get("prompt", "")))
            image = picture(prompt, width, height, mime_type)
        width, height = image_size(image) or (width, height)
        label = situation.mime_type or sniff_mime_type(image) or "image/png"
        details = dict(situation.details)
        body = _image_body(b64(image), around.now)
        if "revised_prompt" in details:
            body["data"][0]["revised_prompt"] = details.pop("revised_prompt")
        image_tokens = 323 * len(request.files) if request.path.endswith("/edits") else 0
        body.update(
            {
                "background": _resolved(fields.get("background"), "opaque"),
                "output_format": label.removeprefix("image/"),
                "quality": _resolved(fields.get("quality"), "medium"),
                "size": f"{width}x{height}",
                "usage": {
                    "input_tokens": 12 + image_tokens,
                    "input_tokens_details": {"text_tokens": 12, "image_tokens": image_tokens},
                    "output_tokens": 1290,
                    "total_tokens": 1302 + image_tokens,
                },
                **details,
            }
        )
        headers = {"x-request-id": situation.request_id} if situation.request_id else {}
        return Reply(200, body, headers)

    def _rate_limited(self, situation: Situation, model: str, around: Surroundings) -> Reply:
        headers = dict(self.rate_limit_headers)
        if headers:
            headers["x-ratelimit-remaining-requests"] = "0"
        message = situation.message or (
            f"Rate limit reached for {model} in organization org-fake on images per "
            "min (IPM): Limit 5, Used 5, Requested 1."
        )
        hint = situation.hint
        if hint is not None and situation.hint_style == "native":
            headers["retry-after-ms"] = str(round(hint * 1000))
        elif hint is not None and situation.hint_style == "message":
            message = f"{message} Please try again in {seconds_text(hint)}s."
        headers.update(hint_headers(situation, around.now))
        return openai_error(
            429, message, type="requests", code="rate_limit_exceeded", headers=headers
        )


def _image_body(data: str, now: float) -> dict[str, Any]:
    return {"created": int(now), "data": [{"b64_json": data}]}


def _resolved(value: object, default: str) -> str:
    return value if isinstance(value, str) and value != "auto" else default
