"""Each provider's answers to the same situations, so one behavioural test runs on all.

A kit knows how its provider says "here is your image", "overloaded", "slow down, wait
N seconds", "out of quota", "refused on safety grounds" and so on, as respx responses.
Tests written against a kit never mention a provider.
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import httpx
import pytest
import respx

from . import gemini_bodies as gb
from .images import png


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class GeminiKit:
    name = "gemini"
    base_url = "https://generativelanguage.googleapis.com"
    blocked_reason = "PROHIBITED_CONTENT"
    output_blocked_reason = "IMAGE_SAFETY"
    # Gemini's image filter names no category; its prompt filter rates each one.
    blocked_categories: ClassVar[dict[str, list[str]]] = {
        "prompt": ["HARM_CATEGORY_DANGEROUS_CONTENT"],
        "output": [],
    }

    def route(self, router: respx.Router) -> respx.Route:
        return router.post(url__regex=r"/v1beta/models/[^/]+:generateContent$")

    def success(self, image: bytes | None = None, request_id: str = "resp-1") -> httpx.Response:
        return httpx.Response(
            200, json=gb.image_answer(image or png(64, 32), response_id=request_id)
        )

    def success_body(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=body)

    def image_payload(self, raw_base64: str) -> httpx.Response:
        body = gb.image_answer()
        body["candidates"][0]["content"]["parts"][1]["inlineData"]["data"] = raw_base64
        return httpx.Response(200, json=body)

    def server_error(
        self, status: int = 503, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.Response(
            status,
            json=gb.error(status, "UNAVAILABLE", "The model is overloaded."),
            headers=headers,
        )

    def rate_limited(
        self, hint: float | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """429 with the provider's own body hint (Gemini: RetryInfo), if any."""
        delay = None if hint is None else f"{hint}s"
        return httpx.Response(429, json=gb.rate_limited(delay), headers=headers)

    def quota_exhausted(self) -> httpx.Response:
        body = gb.rate_limited("30s", quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier")
        return httpx.Response(429, json=body)

    def prompt_blocked(self) -> httpx.Response:
        return httpx.Response(200, json=gb.prompt_blocked(self.blocked_reason))

    def output_blocked(self) -> httpx.Response:
        return httpx.Response(200, json=gb.output_blocked(self.output_blocked_reason))

    def bad_key(self) -> httpx.Response:
        return httpx.Response(400, json=gb.key_invalid())

    def unauthenticated(self) -> httpx.Response:
        """401: credentials the server does not accept at all."""
        return httpx.Response(
            401,
            json=gb.error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            ),
        )

    def forbidden(self) -> httpx.Response:
        """403: a known caller that may not use this model or method."""
        return httpx.Response(
            403,
            json=gb.error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            ),
        )

    def no_image(self) -> httpx.Response:
        """A 200 in which the model said something but drew nothing."""
        return httpx.Response(200, json=gb.text_only())

    def not_found(self) -> httpx.Response:
        return httpx.Response(404, json=gb.error(404, "NOT_FOUND", "models/x is not found"))

    def bad_request(self) -> httpx.Response:
        return httpx.Response(
            400, json=gb.error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        )


class OpenAIKit:
    name = "openai"
    base_url = "https://api.openai.com"
    blocked_reason = "moderation_blocked"
    output_blocked_reason = "moderation_blocked"
    blocked_categories: ClassVar[dict[str, list[str]]] = {
        "prompt": ["violence"],
        "output": ["sexual"],
    }

    def route(self, router: respx.Router) -> respx.Route:
        return router.post(url__regex=r"/v1/images/(generations|edits)$")

    def success(self, image: bytes | None = None, request_id: str = "req_1") -> httpx.Response:
        body = {
            "created": 1767225600,
            "data": [{"b64_json": b64(image or png(64, 32))}],
            "output_format": "png",
            "usage": {"input_tokens": 12, "output_tokens": 1290, "total_tokens": 1302},
        }
        return httpx.Response(200, json=body, headers={"x-request-id": request_id})

    def image_payload(self, raw_base64: str) -> httpx.Response:
        return httpx.Response(200, json={"created": 1, "data": [{"b64_json": raw_base64}]})

    def _error(
        self,
        status: int,
        message: str,
        code: str | None,
        kind: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        error = {"message": message, "type": kind, "param": None, "code": code, **extra}
        return httpx.Response(
            status, json={"error": error}, headers={"x-request-id": "req_err", **(headers or {})}
        )

    def server_error(
        self, status: int = 503, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self._error(
            status,
            "The engine is currently overloaded, please try again later.",
            None,
            "server_error",
            headers,
        )

    def rate_limited(
        self, hint: float | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """429 with the provider's own hint (OpenAI: the retry-after-ms header), if any."""
        all_headers = dict(headers or {})
        if hint is not None:
            all_headers["retry-after-ms"] = str(int(hint * 1000))
        return self._error(
            429,
            "Rate limit reached for images per min (IPM).",
            "rate_limit_exceeded",
            "requests",
            all_headers,
        )

    def quota_exhausted(self) -> httpx.Response:
        return self._error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
            {"retry-after": "30"},
        )

    def prompt_blocked(self) -> httpx.Response:
        return self._error(
            400,
            "Your request was rejected by the safety system. safety_violations=[violence].",
            "moderation_blocked",
            "image_generation_user_error",
            moderation_details={"moderation_stage": "input", "categories": ["violence"]},
        )

    def output_blocked(self) -> httpx.Response:
        return self._error(
            400,
            "Your request was rejected by the safety system. safety_violations=[sexual].",
            "moderation_blocked",
            "image_generation_user_error",
            moderation_details={"moderation_stage": "output", "categories": ["sexual"]},
        )

    def bad_key(self) -> httpx.Response:
        return self._error(
            401,
            "Incorrect API key provided: sk-abc***wxyz.",
            "invalid_api_key",
            "invalid_request_error",
        )

    def unauthenticated(self) -> httpx.Response:
        """401: credentials the server does not accept at all."""
        return self._error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            None,
            "invalid_request_error",
        )

    def forbidden(self) -> httpx.Response:
        """403: a known caller that may not use this model or method."""
        return self._error(
            403,
            "Your organization must be verified to use the model `gpt-image-1`. Please go to: "
            "https://platform.openai.com/settings/organization/general and click on Verify "
            "Organization.",
            None,
            "invalid_request_error",
        )

    def no_image(self) -> httpx.Response:
        """OpenAI has no such answer: skip the test that asks for one."""
        pytest.skip(
            "the OpenAI Images API never answers with text instead of an image; a 200 "
            "without image data is a malformed answer (see test_openai_wire.py)"
        )

    def not_found(self) -> httpx.Response:
        return self._error(
            404,
            "The model `gpt-image-9` does not exist.",
            "model_not_found",
            "invalid_request_error",
        )

    def bad_request(self) -> httpx.Response:
        return self._error(400, "Invalid value: 'ultra'.", "invalid_value", "invalid_request_error")


Kit = GeminiKit | OpenAIKit
KITS: dict[str, Kit] = {"gemini": GeminiKit(), "openai": OpenAIKit()}
