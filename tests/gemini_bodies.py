"""Gemini answers as the real API shapes them (see WIRE.md A.3, A.4, B.2), for tests.

Error bodies come from the fake server's own builders (aigen.testing), with defaults for tests.
"""

from __future__ import annotations

import base64
from typing import Any

from aigen.testing import _gemini_bodies as shipped
from aigen.testing._gemini_bodies import PER_MINUTE, rpc_error

from .images import png

MODEL = "gemini-2.5-flash-image"
PATH = f"/v1beta/models/{MODEL}:generateContent"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_answer(
    image: bytes | None = None,
    *,
    text: str | None = "Here is your image.",
    image_signature: bytes | None = b"sig-image",
    text_signature: bytes | None = b"sig-text",
    mime_type: str = "image/png",
    response_id: str = "resp-123",
    image_first: bool = False,
) -> dict[str, Any]:
    """A 200 answer with a text part and an image part, each with a thought signature."""
    image_part: dict[str, Any] = {
        "inlineData": {"mimeType": mime_type, "data": b64(image or png(64, 32))}
    }
    if image_signature is not None:
        image_part["thoughtSignature"] = b64(image_signature)
    parts: list[dict[str, Any]] = [image_part]
    if text is not None:
        text_part: dict[str, Any] = {"text": text}
        if text_signature is not None:
            text_part["thoughtSignature"] = b64(text_signature)
        parts = [image_part, text_part] if image_first else [text_part, image_part]
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": 12,
            "candidatesTokenCount": 1290,
            "totalTokenCount": 1302,
        },
        "modelVersion": MODEL,
        "responseId": response_id,
    }


def prompt_blocked(reason: str = "PROHIBITED_CONTENT") -> dict[str, Any]:
    return {
        "promptFeedback": {
            "blockReason": reason,
            "safetyRatings": [
                {
                    "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                    "probability": "HIGH",
                    "blocked": True,
                },
                {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            ],
        },
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": MODEL,
        "responseId": "resp-blocked",
    }


def output_blocked(reason: str = "IMAGE_SAFETY") -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {},
                "finishReason": reason,
                "index": 0,
                "finishMessage": (
                    "Unable to show the generated image. "
                    "You will not be charged for blocked images."
                ),
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 464,
            "candidatesTokenCount": 0,
            "totalTokenCount": 755,
        },
        "modelVersion": MODEL,
        "responseId": "resp-output-blocked",
    }


def text_only(
    text: str = "I can't draw that, but here is a poem.", reason: str = "STOP"
) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": reason}
        ],
        "modelVersion": MODEL,
        "responseId": "resp-text",
    }


def error(code: int, status: str, message: str, *details: dict[str, Any]) -> dict[str, Any]:
    return rpc_error(code, status, message, *details)


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota_failure(quota_id: str = PER_MINUTE, value: str = "10") -> dict[str, Any]:
    return shipped.quota_failure(quota_id, value)


def rate_limited(
    delay: str | None = "17s",
    quota_id: str = PER_MINUTE,
    value: str = "10",
) -> dict[str, Any]:
    details = [quota_failure(quota_id, value)]
    if delay is not None:
        details.append(retry_info(delay))
    return error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", *details)


def overloaded() -> dict[str, Any]:
    return error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


key_invalid = shipped.key_invalid
